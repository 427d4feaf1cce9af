/* npy.h: the declarations are public: see diffuse.h ("NumPy arrays"). */
#ifndef DF_NPY_H
#define DF_NPY_H
#include "common.h"
#endif
