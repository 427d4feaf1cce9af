/* cpu.c: the CPU level (diffuse.h, cpu.h): detected once, or named by DIFFUSE_ISA.
 *
 * x86-64 reads the CPUID flags through GCC's __builtin_cpu_supports, which also checks that the OS
 * saves the ymm/zmm state (XGETBV). aarch64 always has Advanced SIMD (it is part of the ABI), so
 * neon is always there. The level is a plain global, set before any kernel runs (df_cpu_init in
 * the CLI, or the first df_cpu_isa); every predicate of cpu.h reads it.
 */
#include "cpu.h"
#include "common.h"
#include <stdio.h>
#include <string.h>

static const char *const ISA_NAMES[DF_ISA_COUNT] = {"generic", "avx2", "avx512", "avx512bf16", "neon"};

#if defined(__x86_64__) && defined(__GNUC__)
#define ARCH_X86 1
static const df_isa ARCH_LEVELS[] = {DF_ISA_GENERIC, DF_ISA_AVX2, DF_ISA_AVX512, DF_ISA_AVX512BF16};
#elif defined(__aarch64__)
static const df_isa ARCH_LEVELS[] = {DF_ISA_GENERIC, DF_ISA_NEON};
#else
static const df_isa ARCH_LEVELS[] = {DF_ISA_GENERIC};
#endif
#define N_LEVELS ((int)(sizeof ARCH_LEVELS / sizeof ARCH_LEVELS[0]))

static int g_isa = -1;          /* df_isa, or -1 before the decision */
static const char *g_how = "";  /* how it was chosen, for df_cpu_describe */

const char *df_isa_name(df_isa isa) { return isa >= 0 && isa < DF_ISA_COUNT ? ISA_NAMES[isa] : "?"; }

static void level_list(char *buf, size_t cap) {
    buf[0] = 0;
    for (int i = 0; i < N_LEVELS; i++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i ? "|" : "", ISA_NAMES[ARCH_LEVELS[i]]);
}

df_status df_isa_from_name(const char *s, df_isa *out) {
    for (int i = 0; s && i < N_LEVELS; i++)
        if (strcmp(s, ISA_NAMES[ARCH_LEVELS[i]]) == 0) {
            *out = ARCH_LEVELS[i];
            return DF_OK;
        }
    char list[80];
    level_list(list, sizeof list);
    for (int i = 0; s && i < DF_ISA_COUNT; i++)
        if (strcmp(s, ISA_NAMES[i]) == 0)
            return df_fail(DF_ERR_ARG, "CPU level '%s' belongs to another architecture (this build's levels: %s)", s,
                           list);
    return df_fail(DF_ERR_ARG, "unknown CPU level '%s' (levels: %s)", s ? s : "", list);
}

#ifdef ARCH_X86
/* The CPU flags each level needs, as /proc/cpuinfo spells them, and as GCC names them. */
static const struct { const char *cpuinfo, *gcc; df_isa from; } X86_FLAGS[] = {
    {"avx2", "avx2", DF_ISA_AVX2},         {"fma", "fma", DF_ISA_AVX2},
    {"avx512f", "avx512f", DF_ISA_AVX512}, {"avx512bw", "avx512bw", DF_ISA_AVX512},
    {"avx512vl", "avx512vl", DF_ISA_AVX512}, {"avx512_bf16", "avx512bf16", DF_ISA_AVX512BF16},
};
#define N_X86_FLAGS ((int)(sizeof X86_FLAGS / sizeof X86_FLAGS[0]))

static int x86_flag(const char *gcc) {
    __builtin_cpu_init();
    /* __builtin_cpu_supports wants a literal: one call per name */
    if (!strcmp(gcc, "avx2")) return __builtin_cpu_supports("avx2");
    if (!strcmp(gcc, "fma")) return __builtin_cpu_supports("fma");
    if (!strcmp(gcc, "avx512f")) return __builtin_cpu_supports("avx512f");
    if (!strcmp(gcc, "avx512bw")) return __builtin_cpu_supports("avx512bw");
    if (!strcmp(gcc, "avx512vl")) return __builtin_cpu_supports("avx512vl");
    if (!strcmp(gcc, "avx512bf16")) return __builtin_cpu_supports("avx512bf16");
    return 0;
}
#endif

/* The flags level isa needs that this CPU lacks, space-separated into buf ("" when none). */
static void missing_flags(df_isa isa, char *buf, size_t cap) {
    buf[0] = 0;
#ifdef ARCH_X86
    for (int i = 0; i < N_X86_FLAGS; i++)
        if (X86_FLAGS[i].from <= isa && !x86_flag(X86_FLAGS[i].gcc))
            snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", buf[0] ? " " : "", X86_FLAGS[i].cpuinfo);
#else
    (void)isa, (void)cap;
#endif
}

int df_cpu_supports(df_isa isa) {
    int in_arch = 0;
    for (int i = 0; i < N_LEVELS; i++) in_arch |= ARCH_LEVELS[i] == isa;
    if (!in_arch) return 0;
    char miss[128];
    missing_flags(isa, miss, sizeof miss);
    return miss[0] == 0;
}

/* The highest level this CPU has. */
static df_isa best_level(void) {
    df_isa best = DF_ISA_GENERIC;
    for (int i = 0; i < N_LEVELS; i++)
        if (df_cpu_supports(ARCH_LEVELS[i])) best = ARCH_LEVELS[i];
    return best;
}

/* The automatic choice: the highest level, but avx512 rather than avx512bf16 on Intel cores, where
 * vdpbf16ps runs at half the rate of the fp32 FMA (measured on a Xeon of family 6 model 207: 85
 * against 174 GFLOP/s a core), so that --precision bf16 is faster on the fp32 kernels with rounded
 * inputs (same numerics); on AMD Zen 4 and 5 it runs at twice the FMA rate. fp32 runs the same
 * code at both levels. */
static df_isa auto_level(void) {
    const df_isa best = best_level();
#ifdef ARCH_X86
    if (best == DF_ISA_AVX512BF16 && __builtin_cpu_is("intel")) return DF_ISA_AVX512;
#endif
    return best;
}

static df_status choose(void) {
    const char *env = getenv("DIFFUSE_ISA");
    if (!env || !*env) {
        g_isa = auto_level();
        g_how = g_isa == best_level() ? "the best level of this CPU"
                                      : "chosen for this CPU: its vdpbf16ps is slower than fp32 FMA; DIFFUSE_ISA=avx512bf16 runs it";
        return DF_OK;
    }
    df_isa want;
    if (df_isa_from_name(env, &want)) {
        char msg[256]; /* df_fail formats into the buffer df_last_error() returns */
        snprintf(msg, sizeof msg, "%s", df_last_error());
        return df_fail(DF_ERR_ARG, "DIFFUSE_ISA: %s", msg);
    }
    char miss[128];
    missing_flags(want, miss, sizeof miss);
    if (miss[0])
        return df_fail(DF_ERR_UNSUPPORTED, "DIFFUSE_ISA=%s: this CPU lacks %s (its best level is %s)", env, miss,
                       ISA_NAMES[best_level()]);
    g_isa = want;
    g_how = "DIFFUSE_ISA";
    return DF_OK;
}

df_status df_cpu_init(void) { return choose(); }

df_isa df_cpu_isa(void) {
    if (g_isa < 0 && choose() != DF_OK) {
        fprintf(stderr, "diffuse: %s\n", df_last_error());
        abort();
    }
    return (df_isa)g_isa;
}

df_status df_cpu_set_isa(df_isa isa) {
    if (!df_cpu_supports(isa)) {
        char miss[128];
        missing_flags(isa, miss, sizeof miss);
        return df_fail(DF_ERR_UNSUPPORTED, "CPU level %s: this CPU lacks %s", df_isa_name(isa),
                       miss[0] ? miss : "it (another architecture)");
    }
    g_isa = isa;
    g_how = "set by the program";
    return DF_OK;
}

/* The CPU's model name from /proc/cpuinfo ("" when unreadable). */
static void model_name(char *buf, size_t cap) {
    buf[0] = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (colon && (!strncmp(line, "model name", 10) || !strncmp(line, "CPU part", 8))) {
            colon++;
            while (*colon == ' ' || *colon == '\t') colon++;
            colon[strcspn(colon, "\n")] = 0;
            snprintf(buf, cap, "%s", colon);
            break;
        }
    }
    fclose(f);
}

void df_cpu_describe(char *buf, size_t cap) {
    const df_isa isa = df_cpu_isa();
    char cpu[160], flags[256] = "", list[80];
    model_name(cpu, sizeof cpu);
    level_list(list, sizeof list);
#ifdef ARCH_X86
    for (int i = 0; i < N_X86_FLAGS; i++)
        snprintf(flags + strlen(flags), sizeof flags - strlen(flags), "%s%s%s", i ? " " : "",
                 x86_flag(X86_FLAGS[i].gcc) ? "+" : "-", X86_FLAGS[i].cpuinfo);
#elif defined(__aarch64__)
    snprintf(flags, sizeof flags, "+asimd (aarch64)");
#else
    snprintf(flags, sizeof flags, "(no SIMD levels for this architecture)");
#endif
    snprintf(buf, cap, "cpu level: %s (%s; levels here: ", ISA_NAMES[isa], g_how);
    for (int i = 0; i < N_LEVELS; i++)
        if (df_cpu_supports(ARCH_LEVELS[i]))
            snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i ? " " : "", ISA_NAMES[ARCH_LEVELS[i]]);
    snprintf(buf + strlen(buf), cap - strlen(buf), "; of %s)\ncpu: %s\ncpu flags: %s", list, cpu[0] ? cpu : "?", flags);
}
