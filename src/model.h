/* model.h: the declarations are public: see diffuse.h ("models"). */
#ifndef DF_MODEL_H
#define DF_MODEL_H
#include "common.h"
#include "mlp.h"
#include "params.h"
#include "unet.h"
#endif
