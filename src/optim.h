/* optim.h: AdamW and the EMA of the weights, over one contiguous float block.
 * The declarations are public: see diffuse.h ("optimiser"). */
#ifndef DF_OPTIM_H
#define DF_OPTIM_H
#include "common.h"
#endif
