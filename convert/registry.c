/* The architectures convert knows. One line per family. */
#include "arch.h"

#include <stdio.h>
#include <string.h>

extern const ts_arch ts_arch_llama, ts_arch_mistral, ts_arch_qwen2, ts_arch_qwen3, ts_arch_qwen3moe;
extern const ts_arch ts_arch_mixtral, ts_arch_glm4moe, ts_arch_gptoss;
extern const ts_arch ts_arch_deepseek3;

static const ts_arch *const registry[] = {
    &ts_arch_llama,
    &ts_arch_mistral,
    &ts_arch_qwen2,
    &ts_arch_qwen3,
    &ts_arch_qwen3moe,
    &ts_arch_mixtral,
    &ts_arch_glm4moe,
    &ts_arch_gptoss,
    &ts_arch_deepseek3, /* arch_deepseek.c */
};

#define N_ARCH (sizeof registry / sizeof registry[0])

const ts_arch *ts_arch_find(const char *hf_name)
{
    for (size_t i = 0; i < N_ARCH; i++)
        if (!strcmp(registry[i]->hf_name, hf_name))
            return registry[i];
    return NULL;
}

const ts_arch *ts_arch_find_gguf(const char *gguf_arch)
{
    for (size_t i = 0; i < N_ARCH; i++)
        if (!strcmp(registry[i]->gguf_arch, gguf_arch))
            return registry[i];
    return NULL;
}

const char *ts_arch_list(void)
{
    static char buf[1024];
    size_t off = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_ARCH && off < sizeof buf; i++)
        off += (size_t)snprintf(buf + off, sizeof buf - off, "%s%s", i ? ", " : "", registry[i]->hf_name);
    return buf;
}
