/* train.c: see train.h. */
#include "common.h"
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

typedef struct {
    float *x0, *eps, *xt, *target, *out, *dout;
    int *t;
} batch_buffers;

static void free_buffers(batch_buffers *b) {
    df_free(b->x0); df_free(b->eps); df_free(b->xt); df_free(b->target); df_free(b->out); df_free(b->dout);
    df_free(b->t);
}

static df_status alloc_buffers(batch_buffers *b, int batch, size_t dim) {
    size_t bytes = sizeof(float) * (size_t)batch * dim;
    memset(b, 0, sizeof *b);
    if (!(b->x0 = df_alloc(bytes, "training batch")) || !(b->eps = df_alloc(bytes, "training batch")) ||
        !(b->xt = df_alloc(bytes, "training batch")) || !(b->target = df_alloc(bytes, "training batch")) ||
        !(b->out = df_alloc(bytes, "training batch")) || !(b->dout = df_alloc(bytes, "training batch")) ||
        !(b->t = df_alloc(sizeof(int) * (size_t)batch, "training batch")))
        return DF_ERR_NOMEM;
    return DF_OK;
}

/* Builds (x_t, target) for step `step`: t ~ U{1..T}, eps ~ N(0, I), x_t = q_sample(x0, eps). */
static void make_batch(df_model *m, const df_train_opts *o, long step, batch_buffers *b) {
    const df_schedule *s = &m->schedule;
    size_t dim = m->dim;
    o->batch_fn(o->batch_ctx, o->seed, step, o->batch, b->x0);
    for (int j = 0; j < o->batch; j++) {
        size_t off = (size_t)j * dim;
        b->t[j] = (int)df_rand_below(o->seed, DF_STREAM_TRAIN_T, (uint32_t)step, (uint32_t)(step >> 32), (uint32_t)j, (uint32_t)s->T);
        df_randn(o->seed, DF_STREAM_TRAIN_EPS, (uint32_t)step, (uint32_t)j, b->eps + off, dim);
        df_q_sample(s, b->t[j], b->x0 + off, b->eps + off, b->xt + off, dim);
        df_pred_target(s, b->t[j], m->diff.pred, b->x0 + off, b->eps + off, b->xt + off, b->target + off, dim);
    }
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

df_status df_train(df_model *m, const df_train_opts *o, int resume) {
    if (o->batch < 1 || o->batch > m->max_batch)
        return df_fail(DF_ERR_ARG, "batch must be in 1..%d (got %d)", m->max_batch, o->batch);
    if (o->steps <= 0 && o->minutes <= 0) return df_fail(DF_ERR_ARG, "give --steps or --minutes");
    if (o->steps > 0 && o->steps < m->step)
        return df_fail(DF_ERR_ARG, "the checkpoint is already at step %ld, past --steps %ld", m->step, o->steps);
    ASSERT(m->training && o->batch_fn);
    df_status mk = df_mkdirs(o->out_dir);
    if (mk != DF_OK) return mk;
    remove_stale_temporaries(o->out_dir);
    m->seed = o->seed;
    m->ema_decay = o->ema_decay;

    batch_buffers b;
    df_status st = alloc_buffers(&b, o->batch, m->dim);
    FILE *log = st == DF_OK ? open_loss_log(o->out_dir, m->step, resume) : NULL;
    if (st == DF_OK && !log) st = df_fail(DF_ERR_IO, "cannot write %s/loss.csv: %s", o->out_dir, strerror(errno));
    if (st != DF_OK) goto done;

    double t0 = df_time(), last_report = t0, loss_sum = 0;
    long first = m->step, loss_count = 0, skipped = 0;
    df_train_progress pr;
    memset(&pr, 0, sizeof pr);
    pr.total_steps = o->steps;
    for (;;) {
        double elapsed = df_time() - t0;
        int out_of_budget = (o->steps > 0 && m->step >= o->steps) || (o->minutes > 0 && elapsed >= 60 * o->minutes);
        int stopping = o->stop && *o->stop;
        if (out_of_budget || stopping) {
            st = save_checkpoint(m, o->out_dir);
            if (st == DF_OK && o->snapshot) st = o->snapshot(o->snapshot_ctx, m, m->step);
            if (st == DF_OK && stopping) st = df_fail(DF_ERR_INTERRUPTED, "stopped at step %ld; checkpoint written to %s", m->step, o->out_dir);
            pr.final = 1;
            pr.elapsed = elapsed;
            if (o->progress) o->progress(o->progress_ctx, &pr);
            break;
        }
        long step = m->step + 1;
        make_batch(m, o, step, &b);
        m->dropout_step = (int)step;
        df_model_forward(m, m->params, o->batch, b.xt, b.t, b.out, 1);
        double loss = df_loss(&m->schedule, m->diff.pred, m->diff.loss, m->diff.var, o->batch, m->dim, b.t, b.out, b.target, b.dout);
        memset(m->grads, 0, m->n_floats * sizeof(float));
        double gnorm = NAN;
        if (isfinite(loss)) {
            df_model_backward(m, m->params, m->grads, o->batch, b.dout);
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
        fprintf(log, "%ld,%.6g,%.6g,%.6g,%.3f\n", step, loss, gnorm, df_adamw_lr_at(&o->opt, step), now - t0);
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
            if (o->progress) o->progress(o->progress_ctx, &pr);
            loss_sum = 0;
            loss_count = 0;
            last_report = now;
        }
        if (o->ckpt_every > 0 && step % o->ckpt_every == 0) {
            fflush(log);
            if ((st = save_checkpoint(m, o->out_dir)) != DF_OK) goto done;
        }
        if (o->snapshot && o->snapshot_every > 0 && step % o->snapshot_every == 0 &&
            (st = o->snapshot(o->snapshot_ctx, m, step)) != DF_OK)
            goto done;
    }
    (void)last_report;
done:
    if (log && fclose(log) != 0 && st == DF_OK) st = df_fail(DF_ERR_IO, "cannot write %s/loss.csv: %s", o->out_dir, strerror(errno));
    free_buffers(&b);
    return st;
}

df_status df_train_load_checkpoint(const char *out_dir, int max_batch, df_model *m) {
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", out_dir);
    return df_model_load(path, max_batch, 1, m);
}
