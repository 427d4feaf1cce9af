/* args.c: see args.h. */
#include "args.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_usage(const char *usage, const arg_spec *specs) {
    printf("%s\n\nOptions:\n", usage);
    for (const arg_spec *s = specs; s->name; s++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s", s->name, s->type == ARG_FLAG ? "" : " V");
        printf("  %-22s %s\n", left, s->help);
    }
    printf("  %-22s %s\n", "--help", "show this help");
}

static int parse_value(const char *cmd, arg_spec *s, const char *v) {
    char *end;
    errno = 0;
    switch (s->type) {
    case ARG_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < INT_MIN || x > INT_MAX) break;
        *(int *)s->ptr = (int)x;
        return 0;
    }
    case ARG_LONG: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end) break;
        *(long *)s->ptr = x;
        return 0;
    }
    case ARG_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x)) break;
        *(double *)s->ptr = x;
        return 0;
    }
    case ARG_STRING:
        *(const char **)s->ptr = v;
        return 0;
    case ARG_FLAG: break;
    }
    fprintf(stderr, "diffuse %s: --%s expects %s, got '%s'\n", cmd, s->name,
            s->type == ARG_DOUBLE ? "a number" : "an integer", v);
    return 2;
}

int args_parse(const char *cmd, const char *usage, arg_spec *specs, int argc, char **argv, int first) {
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_usage(usage, specs);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "diffuse %s: unexpected argument '%s' (options start with --; see diffuse %s --help)\n", cmd, a, cmd);
            return 2;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        arg_spec *s = specs;
        for (; s->name; s++)
            if (strlen(s->name) == len && strncmp(s->name, name, len) == 0) break;
        if (!s->name) {
            fprintf(stderr, "diffuse %s: unknown option '--%.*s' (see diffuse %s --help)\n", cmd, (int)len, name, cmd);
            return 2;
        }
        s->seen = 1;
        if (s->type == ARG_FLAG) {
            if (eq) {
                fprintf(stderr, "diffuse %s: --%s takes no value\n", cmd, s->name);
                return 2;
            }
            *(int *)s->ptr = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(stderr, "diffuse %s: --%s needs a value\n", cmd, s->name);
            return 2;
        }
        int rc = parse_value(cmd, s, v);
        if (rc) return rc;
    }
    return 0;
}
