/* atomic.h: the declarations are public: see diffuse.h ("crash-safe files"). */
#ifndef DF_ATOMIC_H
#define DF_ATOMIC_H
#include "common.h"
#endif
