/* q2_K q3_K q4_K q5_K q6_K (kernels in kernels/quant_k*.c). */
#include "quant.h"

const ts_quant_type ts_quant_types_k[] = {
    {TS_DTYPE_INVALID, NULL, NULL},
};
