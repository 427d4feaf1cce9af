/* train.c: see train.h. */
#include "common.h"
#include "model_impl.h"
#include "dist.h"
#include "mlp.h"
#include "params.h"
#include "unet.h"
#include <errno.h>
#include <math.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

void df_train_opts_init(df_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 1000;
    o->batch = 64;
    df_adamw_params_init(&o->opt);
    o->ema_decay = 0.999;
    o->report_every = 10;
}

/* One rank's share of a step: samples [lo, lo + n) of the global batch of `global` samples
 * (lo = rank * global / ranks, n = global / ranks; one process: lo 0, n = global). x0 holds the whole
 * global batch (batch_fn draws it whole, so each sample is the one a one-process run would see), the
 * rest only this rank's samples. */
typedef struct {
    float *xall, *x0, *eps, *xt, *target, *out, *dout;
    int *t;
    int *yall, *y;      /* a conditional model's labels: the global batch, and this rank's share */
    int global, lo, n;
} batch_buffers;

static void free_buffers(batch_buffers *b) {
    df_free(b->xall); df_free(b->eps); df_free(b->xt); df_free(b->target); df_free(b->out); df_free(b->dout);
    df_free(b->t);
    df_free(b->yall);
}

static df_status alloc_buffers(batch_buffers *b, int global, int lo, int n, size_t dim, int conditional) {
    size_t bytes = sizeof(float) * (size_t)n * dim;
    memset(b, 0, sizeof *b);
    b->global = global, b->lo = lo, b->n = n;
    if (!(b->xall = df_alloc(sizeof(float) * (size_t)global * dim, "training batch")) ||
        !(b->eps = df_alloc(bytes, "training batch")) ||
        !(b->xt = df_alloc(bytes, "training batch")) || !(b->target = df_alloc(bytes, "training batch")) ||
        !(b->out = df_alloc(bytes, "training batch")) || !(b->dout = df_alloc(bytes, "training batch")) ||
        !(b->t = df_alloc(sizeof(int) * (size_t)n, "training batch")) ||
        (conditional && !(b->yall = df_alloc(sizeof(int) * (size_t)global, "training labels"))))
        return DF_ERR_NOMEM;
    b->x0 = b->xall + (size_t)lo * dim;
    b->y = b->yall ? b->yall + lo : NULL;
    return DF_OK;
}

/* Builds (x_t, target) for step `step`: t ~ U{1..T}, eps ~ N(0, I), x_t = q_sample(x0, eps), each
 * keyed by the sample's index in the global batch, so that the ranks together draw what one process
 * draws. */
static void make_batch(df_model *m, const df_train_opts *o, long step, batch_buffers *b) {
    const df_schedule *s = &m->schedule;
    size_t dim = m->dim;
    o->batch_fn(o->batch_ctx, o->seed, step, b->global, b->xall, b->yall);
    for (int i = 0; i < b->n; i++) {
        const int j = b->lo + i;  /* the global index */
        size_t off = (size_t)i * dim;
        /* the label dropped to the null class with probability cond_drop (24-bit resolution) */
        if (b->y && df_rand_below(o->seed, DF_STREAM_COND_DROP, (uint32_t)step, (uint32_t)(step >> 32), (uint32_t)j,
                                  1u << 24) < o->cond_drop * (1u << 24))
            b->y[i] = m->null_class;
        b->t[i] = (int)df_rand_below(o->seed, DF_STREAM_TRAIN_T, (uint32_t)step, (uint32_t)(step >> 32), (uint32_t)j, (uint32_t)s->T);
        df_randn(o->seed, DF_STREAM_TRAIN_EPS, (uint32_t)step, (uint32_t)j, b->eps + off, dim);
        df_q_sample(s, b->t[i], b->x0 + off, b->eps + off, b->xt + off, dim);
        df_pred_target(s, b->t[i], m->diff.pred, b->x0 + off, b->eps + off, b->xt + off, b->target + off, dim);
    }
}

/* Rank 0 alone writes files; this gives every rank rank 0's status, so that all of them go on or
 * stop together (one process: st itself). */
static df_status rank0_status(df_status st) {
    if (df_dist_size() == 1) return st;
    int v = (int)st;
    df_dist_bcast(&v, sizeof v, 0);
    if (df_dist_rank() != 0 && v != DF_OK) return df_fail((df_status)v, "rank 0 failed (its message says why)");
    return st;
}

/* The ranks apply the same update to the same weights: a hash of the weights and the step must
 * agree (checked at every checkpoint; free in one process). */
static df_status check_ranks_agree(const df_model *m) {
    if (df_dist_size() == 1) return DF_OK;
    uint64_t h = df_dist_hash(m->params, m->n_floats * sizeof(float), 0);
    h = df_dist_hash(m->ema, m->n_floats * sizeof(float), h);
    h = df_dist_hash(&m->step, sizeof m->step, h);
    if (!df_dist_same_u64(h))
        return df_fail(DF_ERR_UNSUPPORTED, "the ranks' weights differ at step %ld (a rank computed differently)", m->step);
    return DF_OK;
}

static df_status save_checkpoint(df_model *m, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
    df_status st = df_model_save(m, path, 1);
    if (st != DF_OK) return st;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    return df_model_save(m, path, 0);
}

/* The loss log: "step,loss,grad_norm,lr,elapsed_s". On resume, rows past the checkpoint's step
 * (written after it, then lost in the crash) are dropped so the log matches the weights. */
static FILE *open_loss_log(const char *dir, long resume_step, int resume) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/loss.csv", dir);
    if (resume) {
        FILE *in = fopen(path, "r");
        if (in) {
            snprintf(tmp, sizeof tmp, "%s.cut", path);
            FILE *out = fopen(tmp, "w");
            char line[512];
            while (out && fgets(line, sizeof line, in)) {
                long st = 0;
                if (sscanf(line, "%ld,", &st) == 1 && st > resume_step) break;
                fputs(line, out);
            }
            fclose(in);
            if (out && fclose(out) == 0) rename(tmp, path);
            return fopen(path, "a");
        }
    }
    FILE *f = fopen(path, "w");
    if (f) fprintf(f, "step,loss,grad_norm,lr,elapsed_s\n");
    return f;
}

/* A run killed while writing leaves "<file>.tmp.<pid>" behind (the rename never happened); the
 * file it was replacing is intact. Remove such leftovers of earlier processes at start-up. */
static void remove_stale_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        const char *tmp = strstr(e->d_name, ".tmp.");
        if (!tmp || strtol(tmp + 5, NULL, 10) == (long)getpid()) continue;
        if (strncmp(e->d_name, "checkpoint.safetensors", 22) && strncmp(e->d_name, "model.safetensors", 17) &&
            strncmp(e->d_name, "samples.png", 11) && strncmp(e->d_name, "loss.png", 8))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

/* The gradient all-reduce's mean cost per step so far, into the progress report. */
static void comm_report(df_train_progress *pr, double comm_s, double wait_s, long steps) {
    pr->allreduce_ms = steps ? 1e3 * comm_s / steps : 0;
    pr->wait_ms = steps ? 1e3 * wait_s / steps : 0;
}

df_status df_train(df_model *m, const df_train_opts *o, int resume) {
    /* Data-parallel (src/dist/): rank r of P takes samples [r B/P, (r+1) B/P) of every global batch
     * of B; the gradients are summed over the ranks, and every rank applies the same update. One
     * process (P = 1) is the plain loop: no collective runs. */
    const int ranks = df_dist_size(), rank = df_dist_rank(), root = rank == 0;
    if (o->batch > 0 && o->batch % ranks)
        return df_fail(DF_ERR_ARG, "the batch %d is not divisible by the %d processes (mpirun -np %d): each takes an "
                       "equal share", o->batch, ranks, ranks);
    const int local = o->batch / ranks;
    if (o->batch < 1 || local > m->max_batch)
        return df_fail(DF_ERR_ARG, "batch must be in 1..%d (got %d)", m->max_batch * ranks, o->batch);
    if (o->steps <= 0 && o->minutes <= 0) return df_fail(DF_ERR_ARG, "give --steps or --minutes");
    if (o->steps > 0 && o->steps < m->step)
        return df_fail(DF_ERR_ARG, "the checkpoint is already at step %ld, past --steps %ld", m->step, o->steps);
    ASSERT(m->training && o->batch_fn);
    df_status st = DF_OK;
    if (root) {
        st = df_mkdirs(o->out_dir);
        if (st == DF_OK) remove_stale_temporaries(o->out_dir);
    }
    if ((st = rank0_status(st)) != DF_OK) return st;
    m->seed = o->seed;
    m->ema_decay = o->ema_decay;
    m->dropout_first = (long)rank * local;

    batch_buffers b;
    st = alloc_buffers(&b, o->batch, rank * local, local, m->dim, m->n_classes > 0);
    if (st == DF_OK && m->n_classes > 0 && (m->null_class < 0 || !(o->cond_drop >= 0 && o->cond_drop <= 1)))
        st = df_fail(DF_ERR_ARG, "a conditional model trains with a null class and a label drop probability in [0, 1] "
                     "(null class %d, drop %g)", m->null_class, o->cond_drop);
    FILE *log = NULL;
    if (st == DF_OK && root) {
        log = open_loss_log(o->out_dir, m->step, resume);
        if (!log) st = df_fail(DF_ERR_IO, "cannot write %s/loss.csv: %s", o->out_dir, strerror(errno));
    }
    if (ranks > 1 && df_dist_max_int(st != DF_OK) && st == DF_OK) st = df_fail(DF_ERR_NOMEM, "another rank failed");
    if (st != DF_OK) goto done;

    double t0 = df_time(), last_report = t0, loss_sum = 0, comm_s = 0, wait_s = 0;
    long first = m->step, loss_count = 0, skipped = 0, comm_steps = 0;
    df_train_progress pr;
    memset(&pr, 0, sizeof pr);
    pr.total_steps = o->steps;
    for (;;) {
        double elapsed = df_time() - t0;
        int out_of_budget = (o->steps > 0 && m->step >= o->steps) || (o->minutes > 0 && elapsed >= 60 * o->minutes);
        int stopping = o->stop && *o->stop;
        if (ranks > 1) {
            /* one decision for all: any rank's stop request, rank 0's clock */
            double flags[2] = {stopping, root && out_of_budget};
            df_dist_allreduce_sum_f64(flags, 2);
            stopping = flags[0] > 0;
            out_of_budget = (o->steps > 0 && m->step >= o->steps) || flags[1] > 0;
        }
        if (out_of_budget || stopping) {
            st = check_ranks_agree(m);
            if (st == DF_OK && root) {
                fflush(log);  /* under mpirun a stop is followed by SIGKILL after a grace period */
                st = save_checkpoint(m, o->out_dir);
                if (st == DF_OK && o->snapshot) st = o->snapshot(o->snapshot_ctx, m, m->step);
            }
            st = rank0_status(st);
            if (st == DF_OK && stopping) st = df_fail(DF_ERR_INTERRUPTED, "stopped at step %ld; checkpoint written to %s", m->step, o->out_dir);
            pr.final = 1;
            pr.elapsed = elapsed;
            comm_report(&pr, comm_s, wait_s, comm_steps);
            if (o->progress && root) o->progress(o->progress_ctx, &pr);
            break;
        }
        long step = m->step + 1;
        make_batch(m, o, step, &b);
        m->dropout_step = (int)step;
        df_model_forward(m, m->params, local, b.xt, b.t, b.y, b.out, 1);
        double loss = df_loss(&m->schedule, m->diff.pred, m->diff.loss, m->diff.var, local, m->dim, b.t, b.out, b.target, b.dout);
        if (ranks > 1) {  /* the global mean: the ranks' means of equal shares, averaged */
            df_dist_allreduce_sum_f64(&loss, 1);
            loss /= ranks;
        }
        memset(m->grads, 0, m->n_floats * sizeof(float));
        double gnorm = NAN;
        if (isfinite(loss)) {
            df_model_backward(m, m->params, m->grads, local, b.dout);
            if (ranks > 1) {
                /* each rank's gradient is its share's mean: their sum over P is the global batch's */
                /* timed apart (allreduce_ms, wait_ms): the barrier takes the wait for the slowest
                 * rank, which the all-reduce would otherwise include, at the cost of one latency */
                const double c0 = df_time();
                df_dist_barrier();
                const double c1 = df_time();
                df_dist_allreduce_sum_f32(m->grads, m->n_floats);
                wait_s += c1 - c0;
                comm_s += df_time() - c1;
                comm_steps++;
                const float p = (float)ranks;
                for (size_t i = 0; i < m->n_floats; i++) m->grads[i] /= p;
            }
            gnorm = df_grad_norm(m->grads, m->n_floats);
        }
        if (!isfinite(loss) || !isfinite(gnorm)) {
            if (skipped < o->nan_skip) {
                skipped++;
                m->step = step;  /* the step is consumed: its random draws are not reused */
                continue;
            }
            st = df_fail(DF_ERR_NAN, "non-finite %s at step %ld; the last checkpoint in %s is kept (resume it with --resume, "
                         "perhaps with a lower --lr)", isfinite(loss) ? "gradient" : "loss", step, o->out_dir);
            goto done;
        }
        double scale = o->opt.grad_clip > 0 && gnorm > o->opt.grad_clip ? o->opt.grad_clip / gnorm : 1.0;
        df_adamw_step(&o->opt, step, m->params, m->grads, m->adam_m, m->adam_v, m->n_floats, scale);
        df_ema_update(m->ema, m->params, m->n_floats, df_ema_decay_at(o->ema_decay, step));
        m->step = step;

        double now = df_time();
        if (root) fprintf(log, "%ld,%.6g,%.6g,%.6g,%.3f\n", step, loss, gnorm, df_adamw_lr_at(&o->opt, step), now - t0);
        loss_sum += loss;
        loss_count++;
        pr.step = step;
        pr.loss = loss;
        pr.grad_norm = gnorm;
        pr.lr = df_adamw_lr_at(&o->opt, step);
        if (o->report_every > 0 && step % o->report_every == 0) {
            pr.loss_avg = loss_sum / loss_count;
            pr.elapsed = now - t0;
            pr.steps_per_s = (step - first) / pr.elapsed;
            pr.examples_per_s = pr.steps_per_s * o->batch;
            double left_steps = o->steps > 0 ? (o->steps - step) / pr.steps_per_s : 1e300;
            double left_time = o->minutes > 0 ? 60 * o->minutes - pr.elapsed : 1e300;
            pr.eta = fmin(left_steps, left_time);
            comm_report(&pr, comm_s, wait_s, comm_steps);
            if (o->progress && root) o->progress(o->progress_ctx, &pr);
            loss_sum = 0;
            loss_count = 0;
            last_report = now;
        }
        if (o->ckpt_every > 0 && step % o->ckpt_every == 0) {
            st = check_ranks_agree(m);
            if (st == DF_OK && root) {
                fflush(log);
                st = save_checkpoint(m, o->out_dir);
            }
            if ((st = rank0_status(st)) != DF_OK) goto done;
        }
        if (o->snapshot && o->snapshot_every > 0 && step % o->snapshot_every == 0) {
            if (root) st = o->snapshot(o->snapshot_ctx, m, step);
            if ((st = rank0_status(st)) != DF_OK) goto done;
        }
    }
    (void)last_report;
done:
    if (log && fclose(log) != 0 && st == DF_OK) st = df_fail(DF_ERR_IO, "cannot write %s/loss.csv: %s", o->out_dir, strerror(errno));
    free_buffers(&b);
    return st;
}

df_status df_train_load_checkpoint(const char *out_dir, int max_batch, df_model **m) {
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", out_dir);
    return df_model_load(path, max_batch, 1, m);
}
