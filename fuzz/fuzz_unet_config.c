/* fuzz_unet_config.c: libFuzzer harness for the U-Net config.json reader df_unet_config_from_json
 * (src/nets/unet.c). An accepted config must pass df_unet_config_validate and survive a round trip
 * through df_unet_config_to_json unchanged. */
#include "fuzz_common.h"
#include "unet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    df_unet_config c;
    if (fuzz_note("df_unet_config_from_json", df_unet_config_from_json((const char *)data, size, &c)) != DF_OK) return 0;
    FUZZ_CHECK(df_unet_config_validate(&c) == DF_OK);
    char text[4096];
    size_t len = df_unet_config_to_json(&c, text, sizeof text);
    FUZZ_CHECK(len < sizeof text);
    df_unet_config back;
    FUZZ_CHECK(df_unet_config_from_json(text, len, &back) == DF_OK);
    FUZZ_CHECK(memcmp(&c, &back, sizeof c) == 0);
    return 0;
}
