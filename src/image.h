/* image.h: the declarations are public: see diffuse.h ("pictures"). */
#ifndef DF_IMAGE_H
#define DF_IMAGE_H
#include "common.h"
#endif
