#!/usr/bin/env python3
"""make_seeds.py: writes the seed corpora fuzz/corpus/<harness>/ (committed; rerun to regenerate).

What it is: small valid files of every format a harness reads (cut down from what tests/data and
tests/fixtures hold), plus a few malformed ones near the edges the parsers check, so that each
fuzzer starts inside the format instead of guessing magic numbers. Standard library only; the JPEG
seeds need cjpeg (Debian's libjpeg-turbo-progs) and are skipped without it.
What it is not: a test. Whether a seed is accepted or refused, the harness only demands no crash.
Files named regress_* are inputs that once broke a parser (docs/robustness.md); they are kept.
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")
SEP = b"\n--FUZZ-NEXT-FILE--\n"  # fuzz_common.h FUZZ_SEP


def put(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ------------------------------------------------------------------ safetensors

def safetensors(tensors, meta=None, pad_to=8):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, blob = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % pad_to)
    return struct.pack("<Q", len(h)) + h + blob


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def seeds_safetensors():
    good = safetensors(
        [("w", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6)),
         ("h", "F16", [2], struct.pack("<2e", 0.5, -2.0)),
         ("b", "BF16", [1, 2], b"\x80\x3f\x00\xc0"),
         ("d", "F64", [], struct.pack("<d", 3.25)),
         ("i", "I32", [2], struct.pack("<2i", 7, -7)),
         ("e", "F32", [0, 4], b"")],
        meta={"format": "pt", "step": "12"})
    put("safetensors", "valid_mixed", good)
    put("safetensors", "valid_empty", safetensors([]))
    put("safetensors", "valid_unpadded", safetensors([("x", "F32", [1], f32(9))], pad_to=1))
    put("safetensors", "truncated", good[:-5])
    raw_header = lambda h, blob=b"": struct.pack("<Q", len(h)) + h + blob
    put("safetensors", "overlap", raw_header(
        b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        f32(1)))
    put("safetensors", "huge_shape", raw_header(
        b'{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}'))
    # a tensor from the real fixtures, cut down to its first entry
    fixture = os.path.join(ROOT, "tests", "fixtures", "bound_reference.safetensors")
    if os.path.exists(fixture):
        with open(fixture, "rb") as f:
            raw = f.read()
        hlen = struct.unpack("<Q", raw[:8])[0]
        hdr = json.loads(raw[8:8 + hlen])
        name = next(k for k in hdr if k != "__metadata__")
        e = hdr[name]
        b, end = e["data_offsets"]
        data = raw[8 + hlen + b: 8 + hlen + end]
        put("safetensors", "fixture_cut", safetensors([(name, e["dtype"], e["shape"], data)],
                                                      meta=hdr.get("__metadata__")))


# ------------------------------------------------------------------ JSON and configs

def read(*parts):
    with open(os.path.join(ROOT, *parts), "rb") as f:
        return f.read()


UNET_TINY = read("tests", "data", "diffusers_tiny", "unet", "config.json")
SCHED_TINY = read("tests", "data", "diffusers_tiny", "scheduler", "scheduler_config.json")

UNET_ATTN = json.dumps({
    "_class_name": "UNet2DModel", "_diffusers_version": "0.21.4", "act_fn": "silu", "add_attention": True,
    "attention_head_dim": 8, "attn_norm_num_groups": None, "block_out_channels": [16, 32, 32],
    "center_input_sample": False, "class_embed_type": None,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"], "downsample_padding": 0,
    "downsample_type": "conv", "dropout": 0.1, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3,
    "layers_per_block": 2, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2D", "norm_eps": 1e-06,
    "norm_num_groups": 8, "num_class_embeds": None, "num_train_timesteps": None, "out_channels": 3,
    "resnet_time_scale_shift": "default", "sample_size": 16, "time_embedding_dim": None,
    "time_embedding_type": "positional", "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "upsample_type": "conv"}).encode()

SCHED_COSINE = json.dumps({
    "_class_name": "DDIMScheduler", "beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 50,
    "prediction_type": "v_prediction", "clip_sample": False, "clip_sample_range": 1.5, "set_alpha_to_one": True,
    "steps_offset": 1, "timestep_spacing": "leading", "thresholding": False, "dynamic_thresholding_ratio": 0.995,
    "sample_max_value": 1.0, "rescale_betas_zero_snr": False, "trained_betas": None,
    "variance_type": "fixed_small"}).encode()

SCHED_SCALED = b'{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, ' \
               b'"num_train_timesteps": 20, "prediction_type": "sample", "variance_type": "fixed_small_log"}'


def seeds_json():
    put("json", "unet_config", UNET_TINY)
    put("json", "scheduler", SCHED_TINY)
    put("json", "escapes", '{"a": "tab\\t quote\\" \\u00e9 \\ud83d\\ude00 \\/", "b": [true, false, null]}')
    put("json", "numbers", "[0, -0, 1.5e-3, -12E+2, 123456789012345678901234567890, 0.1]")
    put("json", "nested", "[" * 60 + "{}" + "]" * 60)
    put("json", "utf8", '{"\xc3\xa9t\xc3\xa9": "\xe2\x82\xac \xf0\x9f\x98\x80"}'.encode("latin-1"))
    put("json", "bad_trailing_comma", '{"a": 1,}')
    put("json", "bad_duplicate", '{"a": 1, "a": 2}')
    put("json", "bad_surrogate", '"\\ud800x"')


def seeds_unet_config():
    put("unet_config", "tiny", UNET_TINY)
    put("unet_config", "attention", UNET_ATTN)
    put("unet_config", "bad_blocks", UNET_ATTN.replace(b'"AttnUpBlock2D"', b'"UpBlock2D"', 1))


def seeds_diffusers_config():
    put("diffusers_config", "tiny", UNET_TINY + SEP + SCHED_TINY)
    put("diffusers_config", "attn_cosine", UNET_ATTN + SEP + SCHED_COSINE)
    put("diffusers_config", "scaled", UNET_TINY + SEP + SCHED_SCALED)
    put("diffusers_config", "unknown_key", UNET_TINY.replace(b'"act_fn"', b'"act_fnx"') + SEP + b"{}")


# ------------------------------------------------------------------ IDX and CIFAR-10

def idx_pair(n, h, w):
    images = struct.pack(">IIII", 0x803, n, h, w) + bytes((7 * i) % 256 for i in range(n * h * w))
    labels = struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n))
    return images, labels


def seeds_idx():
    images, labels = idx_pair(3, 4, 5)
    put("idx", "valid", images + SEP + labels)
    put("idx", "valid_gzip", gzip.compress(images, mtime=0) + SEP + gzip.compress(labels, mtime=0))
    put("idx", "truncated", images[:-3] + SEP + labels)
    put("idx", "count_mismatch", images + SEP + struct.pack(">II", 0x801, 2) + b"\x01\x02")
    put("idx", "bad_magic", b"\x00\x00\x08\x01" + images[4:] + SEP + labels)


def seeds_cifar():
    rec = lambda label: bytes([label]) + bytes((i * 5) % 256 for i in range(3072))
    put("cifar", "two_records", rec(3) + rec(9))
    put("cifar", "bad_label", rec(10))
    put("cifar", "short", rec(1)[:-1])


# ------------------------------------------------------------------ CSV points

def seeds_csv():
    put("csv", "header", "x,y\n0.5,-1.25\n1e-3, 2\n# comment\n\n-3;4\n")
    put("csv", "label_column", "1,2,blue\n3,4,red\n")
    put("csv", "bad_value", "x,y\n1,nan\n")
    put("csv", "crlf", "x,y\r\n1,2\r\n")


# ------------------------------------------------------------------ PNG and JPEG

def png(w, h, color, depth, rows, plte=None, trns=None):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)
    raw = b"".join(b"\x00" + r for r in rows)  # filter type 0 on every row
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
    if plte:
        out += chunk(b"PLTE", plte)
    if trns:
        out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def png_seeds():
    w, h = 5, 3
    return {
        "gray8": png(w, h, 0, 8, [bytes((x * 50 + y) % 256 for x in range(w)) for y in range(h)]),
        "rgb8": png(w, h, 2, 8, [bytes((x * 40 + c * 80 + y) % 256 for x in range(w) for c in range(3)) for y in range(h)]),
        "rgba8": png(2, 2, 6, 8, [bytes(range(8)), bytes(range(8, 16))]),
        "gray16": png(2, 2, 0, 16, [b"\x12\x34\xff\xff", b"\x00\x00\x80\x00"]),
        "gray_alpha": png(2, 1, 4, 8, [b"\x10\x20\x30\x40"]),
        "palette_trns": png(4, 2, 3, 2, [b"\x1b", b"\xe4"], plte=bytes(range(12)), trns=b"\x00\x80"),
        "gray1": png(9, 2, 0, 1, [b"\xaa\x80", b"\x55\x00"]),
    }


def jpeg_seeds():
    if not shutil.which("cjpeg"):
        print("make_seeds: cjpeg not found, no JPEG seeds", file=sys.stderr)
        return {}
    w, h = 7, 5
    ppm = b"P6\n%d %d\n255\n" % (w, h) + bytes((x * 30 + c * 70 + y * 11) % 256 for y in range(h) for x in range(w) for c in range(3))
    pgm = b"P5\n%d %d\n255\n" % (w, h) + bytes((x * 30 + y * 11) % 256 for y in range(h) for x in range(w))
    run = lambda args, data: subprocess.run(["cjpeg"] + args, input=data, stdout=subprocess.PIPE, check=True).stdout
    return {"rgb_jpg": run(["-quality", "50"], ppm), "gray_jpg": run(["-quality", "50", "-grayscale"], pgm),
            "progressive_jpg": run(["-quality", "30", "-progressive"], ppm)}


def seeds_images():
    pngs = png_seeds()
    for name, data in pngs.items():
        put("png", name, data)
    put("png", "truncated", pngs["rgb8"][:-20])
    put("png", "bad_crc", pngs["gray8"][:30] + b"\x00" + pngs["gray8"][31:])
    images = dict(pngs, **jpeg_seeds())
    controls = [(0, 0), (1, 4), (3, 3), (4, 7), (2, 0), (0, 1)]  # (want_c, want_size) control bytes
    for k, (name, data) in enumerate(sorted(images.items())):
        c, s = controls[k % len(controls)]
        put("image_folder", name, bytes([c, s]) + data)


# ------------------------------------------------------------------ NPY and argv

def seeds_npy():
    d = os.path.join(ROOT, "tests", "data")
    for name in sorted(os.listdir(d)):
        if name.endswith(".npy"):
            put("npy", name[:-4], read("tests", "data", name))
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }"
    hdr += " " * ((-(len(hdr) + 11)) % 64) + "\n"
    put("npy", "truncated", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + f32(1, 2, 3))


def seeds_args():
    argv = lambda *a: "\0".join(a)
    put("args", "toy", argv("--data", "toy:moons", "--steps", "50", "--batch", "16", "--hidden", "16"))
    put("args", "equals", argv("--lr=1e-3", "--ema=0.999", "--flip", "--mult=1,2,2", "--attn-res="))
    put("args", "errors", argv("--steps", "99999999999999999999", "--lr", "nan"))
    put("args", "missing_value", argv("--resume", "--out"))
    put("args", "help", argv("--seed", "-3", "--help"))


def main():
    # regenerate every seed of ours, but keep regress_* files: inputs that once crashed a parser,
    # added by hand so that every .ci/fuzz run replays them
    for root, _, files in os.walk(CORPUS):
        for f in files:
            if not f.startswith("regress_"):
                os.remove(os.path.join(root, f))
    seeds_safetensors()
    seeds_json()
    seeds_unet_config()
    seeds_diffusers_config()
    seeds_idx()
    seeds_cifar()
    seeds_csv()
    seeds_images()
    seeds_npy()
    seeds_args()
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(CORPUS) for f in fs)
    print("make_seeds: %d bytes in %s" % (total, CORPUS))


if __name__ == "__main__":
    main()
