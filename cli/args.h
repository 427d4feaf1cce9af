/* args.h: a small table-driven command-line parser for the diffuse CLI. Every option is
 * "--name value" or "--name=value" (flags take no value); values are parsed strictly. */
#ifndef DF_ARGS_H
#define DF_ARGS_H

typedef enum { ARG_INT, ARG_LONG, ARG_DOUBLE, ARG_STRING, ARG_FLAG } arg_type;

typedef struct {
    const char *name;   /* without the leading "--" */
    arg_type type;
    void *ptr;          /* int*, long*, double*, const char**, int* (flag) */
    const char *help;
    int seen;
} arg_spec;

/* Parses argv[first..argc-1]. Returns 0, or prints one message to stderr and returns 2 on a bad
 * option, and 1 if --help was given (after printing the usage). */
int args_parse(const char *cmd, const char *usage, arg_spec *specs, int argc, char **argv, int first);

#endif
