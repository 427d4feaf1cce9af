/* train.h: the declarations are public: see diffuse.h ("training"). */
#ifndef DF_TRAIN_H
#define DF_TRAIN_H
#include "model.h"
#include "optim.h"
#endif
