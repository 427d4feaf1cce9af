/* diffusers.h: the declarations are public: see diffuse.h ("diffusers interchange"). */
#ifndef DF_DIFFUSERS_H
#define DF_DIFFUSERS_H
#include "model.h"
#include "optim.h"
#endif
