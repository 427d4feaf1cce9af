/* fuzz_diffusers_config.c: libFuzzer harness for the diffusers folder's two config readers
 * (src/model/diffusers.c): df_diffusers_read_unet_config (unet/config.json, every key understood or
 * refused) and df_diffusers_read_scheduler (scheduler/scheduler_config.json).
 * Input: config.json FUZZ_SEP scheduler_config.json. An accepted scheduler must give a usable
 * schedule (df_schedule_new succeeds with finite values in range). */
#include "fuzz_common.h"
#include "common.h"
#include "mlp.h"
#include "params.h"
#include "unet.h"
#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[2];
    size_t len[2];
    fuzz_split(data, size, 2, part, len);
    char unet_path[600], sched_path[600];
    fuzz_path(unet_path, sizeof unet_path, "config.json");
    fuzz_path(sched_path, sizeof sched_path, "scheduler_config.json");
    fuzz_write(unet_path, part[0], len[0]);
    fuzz_write(sched_path, part[1], len[1]);

    df_unet_config c;
    if (fuzz_note("df_diffusers_read_unet_config", df_diffusers_read_unet_config(unet_path, &c)) == DF_OK) FUZZ_CHECK(df_unet_config_validate(&c) == DF_OK);

    df_diffusion_config d;
    df_diffusers_info info;
    if (fuzz_note("df_diffusers_read_scheduler", df_diffusers_read_scheduler(sched_path, &d, &info)) == DF_OK) {
        FUZZ_CHECK(info.has_scheduler == 1 && info.clip_sample_range > 0);
        df_schedule s;
        FUZZ_CHECK(df_schedule_new(&d.schedule, &s) == DF_OK);
        for (int i = 0; i < s.T; i++) {
            FUZZ_CHECK(s.beta[i] > 0 && s.beta[i] < 1);
            FUZZ_CHECK(s.alphabar[i] >= 0 && s.alphabar[i] <= 1);
            /* what samplers and the bound divide by and take logs of */
            FUZZ_CHECK(isfinite(s.posterior_var[i]) && isfinite(s.posterior_log_var_clipped[i]));
            FUZZ_CHECK(isfinite(s.posterior_coef_x0[i]) && isfinite(s.posterior_coef_xt[i]));
        }
        df_schedule_free(&s);
    }
    return 0;
}
