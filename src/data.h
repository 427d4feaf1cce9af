/* data.h: the declarations are public: see diffuse.h ("image datasets"). */
#ifndef DF_DATA_H
#define DF_DATA_H
#include "common.h"
#endif
