/* toydata.h: the declarations are public: see diffuse.h ("2-D data"). */
#ifndef DF_TOYDATA_H
#define DF_TOYDATA_H
#include "common.h"
#endif
