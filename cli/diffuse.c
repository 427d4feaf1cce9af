/* placeholder until the CLI lands */
#include "diffuse.h"
int main(void) { return 0; }
