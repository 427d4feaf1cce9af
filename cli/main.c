/* main.c: the entry point of `diffuse COMMAND [options]`: the usage text and the dispatch to one
 * cmd_*.c per command. The tool is a thin layer over the library: it parses flags, prints
 * progress and turns statuses into one message and an exit code (cli.c). */
#include "cli.h"
#include "dist.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"train", cmd_train, "train a diffusion model (2-D toy data or images)"},
    {"sample", cmd_sample, "draw samples from a trained model"},
    {"info", cmd_info, "print the CPU level in use, and a model's or a preset's configuration"},
    {"eval", cmd_eval, "measure a model: the variational bound on held-out data (bits/dim)"},
    {"predict", cmd_predict, "run the network alone on a .npy input (for checking against other implementations)"},
    {"export", cmd_export, "write a model as a diffusers folder (DDPMPipeline: unet/ + scheduler/)"},
    {"fid", cmd_fid, "the FID between two sets of images (.npy, folder or dataset) in a feature network's space"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "usage: diffuse COMMAND [options]   (diffuse COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

/* "train, sample, ..." for the messages about a missing or unknown command. */
static void command_list(char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_COMMANDS && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", commands[i].name);
}

static const command *find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

/* Under mpirun every rank must run the same command on the same code: each compares its command
 * line and a hash of its own executable with rank 0's, and any difference stops every rank, each
 * differing rank naming what differs. Returns 1 when all agree (always without mpirun). */
static int ranks_agree(int argc, char **argv) {
    if (df_dist_size() == 1) return 1;
    char mine[4096], root[4096];
    size_t used = 0;
    mine[0] = 0;
    for (int i = 1; i < argc && used < sizeof mine; i++)
        used += (size_t)snprintf(mine + used, sizeof mine - used, "%s%s", i > 1 ? " " : "", argv[i]);
    uint64_t code = 0;
    FILE *f = fopen("/proc/self/exe", "rb");
    if (f) {
        char buf[1 << 16];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) code = df_dist_hash(buf, n, code);
        fclose(f);
    }
    memcpy(root, mine, sizeof root);
    df_dist_bcast(root, sizeof root, 0);
    const int args_differ = strcmp(mine, root) != 0, code_differs = !df_dist_same_u64(code);
    if (df_dist_max_int(args_differ) == 0 && !code_differs) return 1;
    if (args_differ)
        fprintf(stderr, "diffuse: rank %d runs '%s' but rank 0 runs '%s'; every rank must run the same command\n",
                df_dist_rank(), mine, root);
    else if (code_differs && df_dist_rank() == 0)
        fprintf(stderr, "diffuse: the ranks run different diffuse executables (their contents differ); "
                        "install the same build on every machine\n");
    return 0;
}

int main(int argc, char **argv) {
    char names[256];
    command_list(names, sizeof names);
    if (argc < 2) {
        fprintf(stderr, "diffuse: no command given (commands: %s; see diffuse --help)\n", names);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    /* the CPU level first: a bad DIFFUSE_ISA stops every command before it reads or writes
     * anything, and it is the user's setting whatever went wrong (exit 2) */
    if (df_cpu_init() != DF_OK) return cli_error(cmd, DF_ERR_ARG);
    const command *c = find_command(cmd);
    if (!c) {
        fprintf(stderr, "diffuse: unknown command '%s' (commands: %s)\n", cmd, names);
        return 2;
    }
    /* MPI beside OpenMP: only this thread communicates. Without a launcher (mpirun) nothing starts
     * and the run is one process, as in a build without MPI (src/dist/dist.h). */
    if (df_dist_init(&argc, &argv) != 0) return 1;
    if (!ranks_agree(argc, argv)) {
        df_dist_finalize();
        return 2;
    }
    int rc = c->run(argc, argv);
    df_dist_finalize();
    return rc;
}
