/* bound.h: the declarations are public: see diffuse.h ("the variational bound"). */
#ifndef DF_BOUND_H
#define DF_BOUND_H
#include "common.h"
#endif
