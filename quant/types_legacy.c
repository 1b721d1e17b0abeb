/* q4_0 q4_1 q5_0 q5_1 iq4_nl iq4_xs (kernels in kernels/quant_legacy.c). */
#include "quant.h"

const ts_quant_type ts_quant_types_legacy[] = {
    {TS_DTYPE_INVALID, NULL, NULL},
};
