"""Speed and memory of Imagic, measured side by side in one run on one machine.

Rows: a naive reference loop written here the way the public community pipeline works (batch 1, float32,
full fine-tuning with Adam over every UNet weight, training noise drawn on the CPU each step, the
unconditional embedding recomputed and one image per sampling call), the model's recommended settings
(`Settings.for_model(model)`), and imagic's `paper` and `fast` presets. Columns: per stage, time per step and total time; stage 2's memory (CPU: peak RSS above the RSS
after the pipeline is loaded; CUDA: torch.cuda.max_memory_allocated above the loaded model); then the
η × seed sampling grid, batched (float32, and under bf16 autocast) against one call per image; then edit
success on the bundled world's held-out edits (`imagic.world`: one seed of four must reach the asked
attribute and keep every other one) with the recommended settings and with `fast`, on the same edits, and a
paired test of the two (an exact one-sided sign test on the edits where exactly one of them succeeds).
The records are `imagic.world.run_edits` records: give `--records` the report notebook's file
(`nbs/world/06_heldout.jsonl`) and the edits it holds are not fitted again.

    python benchmarks/speed.py --quick            # a smoke check, under 10 minutes on a 2-core CPU
    python benchmarks/speed.py                    # every step count in full, 64 held-out edits (2 processes share them)
    python benchmarks/speed.py --sd15 --device cuda   # Stable Diffusion 1.5-sized random components, 512x512
    python benchmarks/speed.py --sdxl --device cuda   # SDXL-sized random components, 1024x1024: paper and fast presets,
                                                      # a few steps per stage extrapolated, in a few minutes
    python benchmarks/speed.py --sd3 --device cuda    # SD3.5-medium-sized random components (MMDiT, two CLIPs, T5-XXL), 1024x1024
    python benchmarks/speed.py --flux --device cuda   # FLUX.1-dev-sized random components (12 B transformer, CLIP, T5-XXL), 1024x1024
    python benchmarks/speed.py --if --device cuda     # DeepFloyd IF-I-XL-sized random components (4.3 B pixel UNet, T5-XXL), 64x64
    python benchmarks/speed.py --sd15 --sdxl --sd3 --flux --device cuda   # the whole device check, one model after another
    python benchmarks/speed.py --overhead             # imagic's per-step overhead against the community pipeline's loop, tiny SD model
    python benchmarks/speed.py --alternate 3          # fit seconds of the recommended settings and `fast`, in turn, 3 rounds (issue 36's target)

Every stage row also gives the per-step overhead: the step's time minus the bare forward and backward pass of
the same denoiser on the same batch (timed in the same process), i.e. what the loop around the network costs.

Each stage measurement runs in its own process, so that one's memory does not count against another's.
"""
import argparse
import copy
import functools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

CONFIGS = ('naive', 'recommended', 'paper', 'fast')
QUALITY_CONFIGS = ('recommended', 'fast')


# ---------------------------------------------------------------- memory
def _rss_kib(field='VmRSS'):
    "Current (VmRSS) or peak (VmHWM) resident set size of this process, KiB (Linux)."
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'): return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak(device):
    if device.type == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    else:
        try: Path('/proc/self/clear_refs').write_text('5')  # reset VmHWM to the current RSS
        except OSError: pass


def _peak_above(device, base):
    "Peak memory since `_reset_peak`, above `base`, in MiB."
    if device.type == 'cuda': torch.cuda.synchronize(); return (torch.cuda.max_memory_allocated() - base) / 2**20
    return (_rss_kib('VmHWM') - base) / 1024


def _base(device):
    return torch.cuda.memory_allocated() if device.type == 'cuda' else _rss_kib('VmRSS')


# ---------------------------------------------------------------- the pipeline
def load(args):
    import imagic
    device = torch.device(args.device)
    half = torch.float16 if device.type == 'cuda' else torch.float32
    if args.sd15:  # random weights of Stable Diffusion 1.5's shapes: timing and memory only
        pipe = sd15_random(device, half)
    elif args.sdxl:  # random weights of SDXL base's shapes, built on the device (no hub there)
        pipe = sdxl_random(device, half, tiny=args.tiny)
    elif getattr(args, 'if'):  # DeepFloyd IF-I-XL's layout at its size, with T5-XXL; float16 as IF ships
        pipe = if_random(device, half, tiny=args.tiny)
    elif args.sd3 or args.flux:  # SD3.5-medium's or FLUX.1-dev's shapes; bf16 as those models ship
        pipe = flow_random('sd3' if args.sd3 else 'flux', device, torch.bfloat16 if device.type == 'cuda' else torch.float32, tiny=args.tiny)
    else:
        pipe = imagic.load_pipeline(args.model, device=device)
    return pipe


def sd15_random(device, dtype):
    "A pipeline with Stable Diffusion 1.5's architecture (860 M-parameter UNet, 512x512) and random weights."
    import tempfile
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from imagic.testing import write_clip_tokenizer
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)  # the defaults are SD 1.x's blocks
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=('DownEncoderBlock2D',) * 4,
                        up_block_types=('UpDecoderBlock2D',) * 4, layers_per_block=2, latent_channels=4, sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77))
    with tempfile.TemporaryDirectory() as d: tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(d))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, unet=unet, text_encoder=text, tokenizer=tok, scheduler=sched, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder): m.requires_grad_(False); m.eval()
    return pipe.to(device, dtype)


def sdxl_random(device, dtype, tiny=False):
    "A pipeline with SDXL base's architecture (2.6 B-parameter UNet, two text encoders, 1024x1024) and random weights; `tiny`: imagic.testing's (a smoke check of this path on a CPU)."
    import tempfile
    from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
    from imagic.testing import tiny_sdxl_components, write_clip_tokenizer
    torch.manual_seed(0)
    if tiny: comps = tiny_sdxl_components()
    else:
        with torch.device(device):  # initialise on the device: seconds there, minutes on the host
            unet = UNet2DConditionModel(
                sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
                down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'),
                up_block_types=('CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'),
                transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                use_linear_projection=True, addition_embed_type='text_time', addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=2816)
            vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=('DownEncoderBlock2D',) * 4,
                                up_block_types=('UpDecoderBlock2D',) * 4, layers_per_block=2, latent_channels=4,
                                sample_size=1024, scaling_factor=0.13025, force_upcast=True)
            te = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                              num_attention_heads=12, max_position_embeddings=77, hidden_act='quick_gelu'))
            te2 = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=49408, hidden_size=1280, intermediate_size=5120,
                                                             num_hidden_layers=32, num_attention_heads=20, max_position_embeddings=77,
                                                             hidden_act='gelu', projection_dim=1280))
        with tempfile.TemporaryDirectory() as d: tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(d))
        comps = dict(vae=vae, unet=unet, text_encoder=te, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok,
                     scheduler=None, force_zeros_for_empty_prompt=True)
    comps['scheduler'] = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', clip_sample=False,
                                       set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionXLPipeline(**comps)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2): m.requires_grad_(False); m.eval()
    pipe.to(device, dtype)
    pipe.vae.to(torch.float32)  # force_upcast, as imagic.load_pipeline does
    return pipe


def flow_random(name, device, dtype, tiny=False):
    "A pipeline with SD3.5-medium's ('sd3') or FLUX.1-dev's ('flux') architecture and random weights, built on the device; `tiny`: imagic.testing's."
    import tempfile
    from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel,
                           SD3Transformer2DModel, StableDiffusion3Pipeline)
    from transformers import (ByT5Tokenizer, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, T5Config,
                              T5EncoderModel)
    from imagic.testing import tiny_flux_components, tiny_sd3_components, write_clip_tokenizer
    torch.manual_seed(0)
    cls = StableDiffusion3Pipeline if name == 'sd3' else FluxPipeline
    if tiny: comps = tiny_sd3_components() if name == 'sd3' else tiny_flux_components()
    else:
        clip = lambda width, layers, heads, **kw: CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=4 * width,
                                                                 num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77, **kw)
        with torch.device(device):  # initialise on the device: seconds there, minutes on the host
            vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=('DownEncoderBlock2D',) * 4,
                                up_block_types=('UpDecoderBlock2D',) * 4, layers_per_block=2, latent_channels=16, sample_size=1024,
                                scaling_factor=1.5305 if name == 'sd3' else 0.3611, shift_factor=0.0609 if name == 'sd3' else 0.1159,
                                use_quant_conv=False, use_post_quant_conv=False)
            t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                                         feed_forward_proj='gated-gelu'))  # T5 v1.1 XXL's encoder
            if name == 'sd3':
                tr = SD3Transformer2DModel(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                                           attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                                           caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=384,
                                           dual_attention_layers=tuple(range(13)), qk_norm='rms_norm')
                te = CLIPTextModelWithProjection(clip(768, 12, 12, projection_dim=768))
                te2 = CLIPTextModelWithProjection(clip(1280, 32, 20, projection_dim=1280))
            else:
                tr = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                                            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                                            guidance_embeds=True, axes_dims_rope=(16, 56, 56))
                te = CLIPTextModel(clip(768, 12, 12))
        with tempfile.TemporaryDirectory() as d: tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(d))
        t5_tok = ByT5Tokenizer(model_max_length=256 if name == 'sd3' else 512)  # byte ids < 384: a tokenizer that needs no files
        if name == 'sd3':
            comps = dict(transformer=tr, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae, text_encoder=te, tokenizer=tok,
                         text_encoder_2=te2, tokenizer_2=tok, text_encoder_3=t5, tokenizer_3=t5_tok)
        else:
            comps = dict(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                                   base_image_seq_len=256, max_image_seq_len=4096),
                         vae=vae, text_encoder=te, tokenizer=tok, text_encoder_2=t5, tokenizer_2=t5_tok, transformer=tr)
    pipe = cls(**comps)
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module): m.requires_grad_(False); m.eval()
    return pipe.to(device, dtype)


def if_unet_config(channels:int, mult, layers:int, cross_dim:int, size:int, super_resolution:bool=False) -> dict:
    "A UNet laid out as diffusers' conversion of DeepFloyd IF lays it out (a plain resnet block at full size, Simple-cross-attention blocks below, T5-XXL states projected in)."
    n = len(mult)
    down = ('ResnetDownsampleBlock2D',) + ('SimpleCrossAttnDownBlock2D',) * (n - 1)
    up = ('SimpleCrossAttnUpBlock2D',) * (n - 1) + ('ResnetUpsampleBlock2D',)
    kw = dict(sample_size=size, in_channels=6 if super_resolution else 3, out_channels=6, block_out_channels=tuple(channels * m for m in mult),
              layers_per_block=layers, down_block_types=down, up_block_types=up, mid_block_type='UNetMidBlock2DSimpleCrossAttn',
              cross_attention_dim=cross_dim, encoder_hid_dim=4096, attention_head_dim=64, addition_embed_type='text',
              addition_embed_type_num_heads=64, cross_attention_norm='group_norm', resnet_time_scale_shift='scale_shift', act_fn='gelu')
    if super_resolution: kw.update(class_embed_type='timestep', mid_block_scale_factor=1.414, time_embedding_act_fn='gelu')
    return kw


def if_random(device, dtype, tiny=False):
    "An IFPipeline with IF-I-XL's layout, its widths set so that the UNet has IF-I-XL's published 4.3 B parameters (64 px), and T5 v1.1 XXL's encoder (4.7 B), random weights, built on the device; `tiny`: imagic.testing's."
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel
    from imagic.testing import tiny_if_components
    torch.manual_seed(0)
    if tiny: comps = tiny_if_components()
    else:
        with torch.device(device):
            unet = UNet2DConditionModel(**if_unet_config(704, (1, 2, 3, 4), 3, 2048, 64))
            t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                                         feed_forward_proj='gated-gelu'))
        sched = DDPMScheduler(variance_type='learned_range', beta_schedule='squaredcos_cap_v2', prediction_type='epsilon',
                              thresholding=True, dynamic_thresholding_ratio=0.95, sample_max_value=1.5)
        comps = dict(tokenizer=ByT5Tokenizer(model_max_length=77), text_encoder=t5, unet=unet, scheduler=sched, safety_checker=None,
                     feature_extractor=None, watermarker=None, requires_safety_checker=False)
    pipe = IFPipeline(**comps)
    for m in (pipe.unet, pipe.text_encoder): m.requires_grad_(False); m.eval()
    print(f"# IF stage I: UNet {sum(p.numel() for p in pipe.unet.parameters()) / 1e9:.2f} B parameters, "
          f"T5 {sum(p.numel() for p in pipe.text_encoder.parameters()) / 1e9:.2f} B", file=sys.stderr)
    return pipe.to(device, dtype)


LARGE = ('sdxl', 'sd3', 'flux', 'if')  # random components of a large model: paper and fast presets, a few steps per stage extrapolated


def _large(args): return any(getattr(args, n) for n in LARGE)


def settings_for(config, args, pipe=None):
    from imagic.core import Settings
    name = 'paper' if config == 'naive' else None if config == 'recommended' else config
    return Settings.for_model(pipe if _large(args) else None if args.sd15 else args.model, preset=name)


# ---------------------------------------------------------------- the naive reference
def naive_stage(pipe, latents, emb0, steps, lr, stage):
    "The community pipeline's loop (SD 1.x only): batch 1, float32, noise drawn on the CPU every step, Adam over everything that trains."
    dev = pipe.unet.device
    if stage == 1:
        unet = pipe.unet
        emb = emb0.detach().float().clone().requires_grad_(True); params = [emb]
    else:
        unet = torch.nn.Module.to(copy.deepcopy(pipe.unet), dtype=torch.float32); unet.train(); unet.requires_grad_(True)
        emb = emb0.detach().float(); params = list(unet.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    T = pipe.scheduler.config.num_train_timesteps
    lat = latents.float()
    for _ in range(steps):
        noise = torch.randn(lat.shape).to(dev)
        t = torch.randint(0, T, (1,)).to(dev)
        x_t = pipe.scheduler.add_noise(lat, noise, t)
        pred = unet(x_t.to(unet.dtype), t, encoder_hidden_states=emb.to(unet.dtype)).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(); loss.backward(); opt.step()
    return unet


def naive_sample(pipe, emb, seed, steps, guidance):
    "One image per call, the unconditional embedding encoded again each time."
    from diffusers import DDIMScheduler
    from imagic.core import encode_text
    dev, dt = pipe.unet.device, pipe.unet.dtype
    uncond = encode_text(pipe, '').to(dev, dt)
    sched = DDIMScheduler.from_config(pipe.scheduler.config); sched.set_timesteps(steps, device=dev)
    c, s = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    x = torch.randn((1, c, s, s), generator=torch.Generator('cpu').manual_seed(seed)).to(dev) * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            inp = sched.scale_model_input(torch.cat([x, x]), t).to(dt)
            pu, pc = pipe.unet(inp, t, encoder_hidden_states=torch.cat([uncond, emb.to(dev, dt)])).sample.float().chunk(2)
            x = sched.step(pu + guidance * (pc - pu), t, x).prev_sample
    return x


# ---------------------------------------------------------------- one measurement (in its own process)
def bare_steps(pipe, latents, emb0, steps, stage, batch=1):
    "The bare forward and backward pass of the denoiser on one batch, repeated: no noise drawing, no optimiser, no bookkeeping."
    from imagic.core import cond_map, family, make_generator, noise_channels
    fam = family(pipe)
    net = fam.denoiser(pipe)
    if stage == 2: net = torch.nn.Module.to(copy.deepcopy(net), dtype=torch.float32); net.requires_grad_(True)
    emb = cond_map(lambda t: t.detach().float().expand(batch, *t.shape[1:]).clone().requires_grad_(stage == 1), emb0)
    sched = fam.training_scheduler(pipe)
    noise, t = fam.draw(latents, sched, make_generator(latents.device), batch, noise_channels(latents, emb))
    dtype = net.dtype
    t0 = time.perf_counter()
    for _ in range(steps): fam.loss(net, sched, latents, emb, noise, t, dtype=dtype).backward()
    if latents.device.type == 'cuda': torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def worker(args):
    from imagic.core import cond_map, denoiser_of, encode_image, encode_text, image_size
    from imagic.stages import finetune, optimize_embedding
    pipe = load(args)
    device = denoiser_of(pipe).device
    s = settings_for(args.config, args, pipe)
    size = image_size(pipe)
    x = torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))
    latents = encode_image(pipe, x).float()
    e = cond_map(lambda t: t.float(), encode_text(pipe, 'a blue bird spreading its wings on a sky background'))
    steps = args.steps if args.steps else (s.embed_steps if args.stage == 1 else s.finetune_steps)
    lr = s.embed_lr if args.stage == 1 else s.finetune_lr
    warm = 2
    def run(n):
        if args.config == 'naive': return naive_stage(pipe, latents, e, n, lr, args.stage)
        if args.stage == 1:
            return optimize_embedding(pipe, latents, e, steps=n, lr=lr, progress=False, batch_size=s.embed_batch,
                                      mixed_precision=s.mixed_precision)
        return finetune(pipe, latents, e, steps=n, lr=lr, progress=False, batch_size=s.finetune_batch,
                        method=s.finetune_method, lora_rank=s.lora_rank, lora_targets=s.lora_targets,
                        gradient_checkpointing=s.gradient_checkpointing,
                        mixed_precision=s.mixed_precision)
    base = _base(device); _reset_peak(device)  # before any training memory: the allocator keeps what it frees
    info = dict(config=args.config, stage=args.stage, steps=steps, full_steps=s.embed_steps if args.stage == 1 else s.finetune_steps,
                batch=1 if args.config == 'naive' else (s.embed_batch if args.stage == 1 else s.finetune_batch))
    try:
        run(warm)  # kernels warmed up
        t0 = time.perf_counter(); run(steps)
        if device.type == 'cuda': torch.cuda.synchronize()
    except torch.cuda.OutOfMemoryError:  # full fine-tuning of SDXL with float32 Adam may not fit: say so
        total = torch.cuda.get_device_properties(device).total_memory / 2**20
        print(json.dumps(dict(info, s_per_step=float('nan'), peak_mib=float('nan'), oom=f'out of memory ({total:.0f} MiB device)'))); return
    dt = time.perf_counter() - t0
    peak = _peak_above(device, base)
    bare = None
    if args.config != 'fast':  # LoRA's bare pass would need the adapters: overhead only where every weight trains (stage 2) or none (stage 1)
        try: bare_steps(pipe, latents, e, 1, args.stage, info['batch']); bare = bare_steps(pipe, latents, e, steps, args.stage, info['batch'])
        except torch.cuda.OutOfMemoryError: bare = None
    print(json.dumps(dict(info, s_per_step=dt / steps, peak_mib=peak, bare_s_per_step=bare)))


def measure(args, config, stage, steps):
    cmd = [sys.executable, __file__, '--worker', '--config', config, '--stage', str(stage), '--device', args.device,
           '--model', args.model] + [f'--{n}' for n in ('sd15',) + LARGE if getattr(args, n)] + \
          (['--tiny'] if args.tiny else []) + (['--steps', str(steps)] if steps else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode: sys.exit(f'worker failed: {" ".join(cmd)}\n{r.stderr[-3000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- sampling grid
def sampling(args, pipe):
    from imagic.core import encode_text
    from imagic.stages import generate_latents
    etas, seeds = [i / 10 for i in range(11)], [0, 1, 2, 3]
    a, b = encode_text(pipe, 'a red bird standing on a white background'), encode_text(pipe, 'a red bird pecking on a white background')
    embs = [eta * b + (1 - eta) * a for eta in etas]
    steps = 10 if args.quick else 50
    def grid(precision):
        t0 = time.perf_counter()
        lat = generate_latents(pipe, embs, seeds, guidance_scale=5.0, steps=steps, batch_size=args.sample_batch,
                               progress=False, mixed_precision=precision)
        return lat, time.perf_counter() - t0
    grid('no')  # warm-up
    batched, t_batched = grid('no')
    low = args.sample_precision if args.sample_precision != 'no' else None
    if low: batched_low, t_low = grid(low)
    t0 = time.perf_counter()
    one = torch.cat([naive_sample(pipe, e, s, steps, 5.0) for e in embs for s in seeds])
    t_naive = time.perf_counter() - t0
    out = dict(images=len(one), steps=steps, batched_s=t_batched, one_by_one_s=t_naive, speedup=t_naive / t_batched,
               max_diff=(one - batched).abs().max().item())
    if low: out.update(precision=low, batched_low_s=t_low, speedup_low=t_naive / t_low, max_diff_low=(one - batched_low).abs().max().item(),
                       mean_diff_low=(one - batched_low).abs().mean().item(), latent_scale=one.abs().max().item())
    return out


# ---------------------------------------------------------------- quality
def quality_settings(args, config):
    "A configuration's settings ('recommended' or a preset); 'fast+<precision>' is the fast preset sampled under that autocast."
    preset, _, low = config.partition('+')
    s = settings_for(preset, args)
    if low: s = s.replace(sample_precision=low)
    return s.replace(sample_steps=25) if args.quick else s


def quality_worker(args):
    "Fit and judge held-out edits `args.edit_ids` with one configuration, stored in `args.records` as it goes (the recommended settings with the ablation)."
    import imagic
    from imagic.world import heldout_edits, run_edits
    pipe = imagic.load_pipeline(args.model, device=args.device)
    s = quality_settings(args, args.config)
    edits = heldout_edits(args.edits, details=_details(args))  # the first n of the held-out stream, as in the bundled world's issue
    for i in (int(k) for k in args.edit_ids.split(',')):
        run_edits(pipe, [edits[i]], s, etas=s.etas, seeds=s.seeds, ablation=args.config == 'recommended', progress=False,
                  records=args.records)


def _threads_per_job(args): return max(1, (os.cpu_count() or 1) // args.jobs)


@functools.lru_cache(maxsize=None)
def _cpu_pipeline(model):
    "The model, loaded once in this process (its weights' fingerprint is part of every stored record's key)."
    import imagic
    return imagic.load_pipeline(model, device='cpu')


def _details(args) -> bool:
    "Which world the held-out edits come from: `--details` / `--no-details`, or else the one the model was trained on (its training log)."
    from imagic.world import trained_on_details
    return args.details if args.details is not None else trained_on_details(_cpu_pipeline(args.model))


def _stored(args, config, n):
    "The held-out edits among the first `n` whose records for `config` (and the model's weights) are already stored: index -> record."
    from imagic.world import heldout_edits
    from imagic.world.edits import stored_records
    s = quality_settings(args, config)
    return stored_records(args.records, _cpu_pipeline(args.model), heldout_edits(n, details=_details(args)), s, s.etas, s.seeds, config == 'recommended')


def quality(args, config, n):
    """Edit success of `config` on the first `n` held-out edits. The edits are shared among `args.jobs` worker
    processes (the cores split evenly among them); records already in `args.records` are reused."""
    from imagic.world.edits import edit_successes, success_rates
    done = _stored(args, config, n)
    todo = [i for i in range(n) if i not in done]
    procs = []
    for j in range(min(args.jobs, len(todo))):
        ids = ','.join(str(i) for i in todo[j::args.jobs])
        cmd = [sys.executable, __file__, '--quality-worker', '--config', config, '--edit-ids', ids, '--records', str(args.records),
               '--device', args.device, '--model', args.model, '--edits', str(n)] + (['--quick'] if args.quick else []) + ['--details' if _details(args) else '--no-details']
        env = {**os.environ, **({'OMP_NUM_THREADS': str(_threads_per_job(args))} if args.jobs > 1 else {})}
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        err = p.communicate()[1]
        if p.returncode: sys.exit(f'quality worker failed ({config}):\n{err[-3000:]}')
    recs = [r for i, r in sorted(_stored(args, config, n).items())]
    s = quality_settings(args, config)
    out = dict(config=config, edits=len(recs), fit_s=sum(r['fit_s'] for r in recs) / len(recs),
               rates={str(eta): success_rates(recs, eta) for eta in s.etas}, etas=list(s.etas),
               per_edit={str(eta): edit_successes(recs, eta) for eta in s.etas})
    if config == 'recommended':
        out['ablation'] = {str(eta): success_rates(recs, eta, 'pretrained') for eta in s.etas}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true', help='few steps per stage (totals extrapolated), 2 edits per preset: a smoke check')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--model', default='birds', help='bundled name, folder or hub id (default: the bundled birds model)')
    ap.add_argument('--sd15', action='store_true', help='Stable Diffusion 1.5-sized random components at 512x512 (speed and memory only)')
    ap.add_argument('--sdxl', action='store_true', help='SDXL-sized random components at 1024x1024: paper and fast presets, 3 steps per stage extrapolated (speed and memory only)')
    ap.add_argument('--sd3', action='store_true', help='SD3.5-medium-sized random components at 1024x1024 (bf16 on CUDA): paper and fast, 3 steps per stage extrapolated')
    ap.add_argument('--flux', action='store_true', help='FLUX.1-dev-sized random components at 1024x1024 (bf16 on CUDA): paper and fast, 3 steps per stage extrapolated')
    ap.add_argument('--if', action='store_true', help="DeepFloyd IF-I-XL-sized random components (4.3 B UNet, T5-XXL) at 64 px: paper (the Imagen settings) and fast, 3 steps per stage extrapolated")
    ap.add_argument('--tiny', action='store_true', help='with --sdxl, --sd3, --flux or --if: the tiny test model instead (a smoke check of that path on a CPU)')
    ap.add_argument('--alternate', type=int, default=0, metavar='N',
                    help="stages 1+2 with the recommended settings and each --presets one in turn, N rounds on one validation edit of the bundled world, medians")
    ap.add_argument('--presets', nargs='+', default=['fast'], help='with --alternate: the presets timed against the recommended settings')
    ap.add_argument('--overhead', action='store_true', help="imagic's stage steps against the community pipeline's loop on a tiny random SD model: alternating runs, medians")
    ap.add_argument('--details', action=argparse.BooleanOptionalAction, default=None,
                    help="held-out edits of the world with marks and pebbles, or (--no-details) without (default: the world the model was trained on)")
    ap.add_argument('--edits', type=int, default=0, help='held-out edits per configuration for quality (default: 2 quick, 64 full)')
    ap.add_argument('--sample-batch', type=int, default=None, help='images per denoising batch in the grid (default: all)')
    ap.add_argument('--sample-precision', default='bf16', choices=('no', 'bf16', 'fp16'),
                    help='also time the batched grid with this autocast (default bf16; no: skip)')
    ap.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1),
                    help='worker processes for the quality edits, the cores split evenly among them (default: 2 where there are 2 cores)')
    ap.add_argument('--records', default=None, help='file that keeps each judged edit, so an interrupted run resumes (default: a new temporary file)')
    ap.add_argument('--json', default=None, help='also write the figures to this JSON file')
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--config', default=None, help=argparse.SUPPRESS)
    ap.add_argument('--stage', type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument('--steps', type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument('--quality-worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--edit-ids', default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.jobs < 1: ap.error('--jobs must be >= 1')
    if args.worker: return worker(args)
    if args.quality_worker: return quality_worker(args)
    if args.overhead: return overhead(args)
    if args.alternate: return alternate(args)
    chosen = [n for n in ('sd15',) + LARGE if getattr(args, n)]
    if len(chosen) > 1:  # the whole device check: one model after another, each in its own processes
        rest = [a for a in sys.argv[1:] if a.lstrip('-') not in chosen and a != '--json']
        for n in chosen:
            r = subprocess.run([sys.executable, __file__, f'--{n}', *rest])
            if r.returncode: print(f'# --{n} failed (exit {r.returncode})', flush=True)
        return
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads'
    large = _large(args)
    if large: args.quick = True  # a few steps per stage, extrapolated, so the script fits a short device lease
    big = next((n for n in LARGE if getattr(args, n)), None)
    sizes = {'sdxl': 'SDXL', 'sd3': 'SD3.5-medium', 'flux': 'FLUX.1-dev', 'if': 'DeepFloyd IF-I-XL (4.3 B) + T5-XXL'}
    what = (f"{sizes[big]}-sized random components" + (" (tiny)" if args.tiny else "")) if large else "SD 1.5-sized random components" if args.sd15 else args.model
    print(f'# imagic speed benchmark — {what} on {name}; torch {torch.__version__}')
    print(f'# mode: {"quick (time per step from a few steps, totals = steps x time per step)" if args.quick else "full"}\n')
    out = dict(device=name, model=f'{big}-random' if large else 'sd15-random' if args.sd15 else args.model, quick=args.quick,
               stages=[], sampling=None, quality=[])
    probe = 3 if large else 10 if args.quick else None
    print("| config | stage | batch | steps | s/step | per-step overhead | total s | peak MiB |\n|---|---|---|---|---|---|---|---|")
    totals = {}
    for config in (('paper', 'fast') if large else CONFIGS):
        for stage in (1, 2):
            m = measure(args, config, stage, probe)
            total = m['s_per_step'] * m['full_steps']
            totals[config] = totals.get(config, 0) + total
            out['stages'].append({**m, 'total_s': total})
            if 'oom' in m: print(f"| {config} | {stage} | {m['batch']} | {m['full_steps']} | {m['oom']} | — | — | — |", flush=True); continue
            over = f"{(m['s_per_step'] - m['bare_s_per_step']) * 1000:.1f} ms" if m.get('bare_s_per_step') is not None else '—'
            print(f"| {config} | {stage} | {m['batch']} | {m['full_steps']} | {m['s_per_step'] * 1000:.1f} ms | {over} | {total:.1f} | {m['peak_mib']:.0f} |", flush=True)
    if large:
        if args.json: Path(args.json).write_text(json.dumps(out, indent=1))
        return
    mem = {m['config']: m['peak_mib'] for m in out['stages'] if m['stage'] == 2}
    out['fit_s'] = totals
    print("\nstages 1+2 end to end: " + ', '.join(f'{c} {t:.0f} s' for c, t in totals.items())
          + f"; fast is {totals['paper'] / totals['fast']:.1f}x faster than paper, {totals['naive'] / totals['fast']:.1f}x than naive")
    print(f"stage-2 memory: fast {mem['fast']:.0f} MiB = {mem['fast'] / mem['paper']:.2f} of full fine-tuning (paper preset)")
    pipe = load(args)
    smp = sampling(args, pipe); out['sampling'] = smp
    print(f"\nsampling an 11 η x 4 seed grid ({smp['steps']} DDIM steps): 44 one-image calls {smp['one_by_one_s']:.1f} s; "
          f"one batched loop {smp['batched_s']:.1f} s = {smp['speedup']:.1f}x (largest latent difference {smp['max_diff']:.1e})")
    if 'precision' in smp:
        print(f"  batched with {smp['precision']} autocast {smp['batched_low_s']:.1f} s = {smp['speedup_low']:.1f}x "
              f"(latent difference: largest {smp['max_diff_low']:.2f}, mean {smp['mean_diff_low']:.3f}; latents reach {smp['latent_scale']:.1f})")
    if not args.sd15:
        n = args.edits or (2 if args.quick else 64)
        if args.records is None:
            import tempfile
            args.records = str(Path(tempfile.mkdtemp(prefix='imagic-speed-')) / 'records.jsonl')
        threads = f'{args.jobs} jobs x {_threads_per_job(args)} thread(s)' if args.jobs > 1 else f'{torch.get_num_threads()} threads'
        print(f"\nedit success on held-out edits (records: {args.records}; fit time per edit with {threads})")
        print("| settings | edits | fit s/edit | η | attribute | kept | both | pretrained (ablation) both |\n|---|---|---|---|---|---|---|---|")
        qs = {}
        for config in QUALITY_CONFIGS:
            q = qs[config] = quality(args, config, n); out['quality'].append(q)
            for eta, r in q['rates'].items():
                abl = f"{q['ablation'][eta]['both']:.0%}" if 'ablation' in q else '—'
                print(f"| {config} | {q['edits']} | {q['fit_s']:.1f} | {eta} | {r['attr']:.0%} | {r['kept']:.0%} | {r['both']:.0%} | {abl} |", flush=True)
        rec, fast = qs['recommended'], qs['fast']
        mid = str(rec['etas'][len(rec['etas']) // 2])
        fmid = str(fast['etas'][len(fast['etas']) // 2])
        from imagic.world.edits import sign_test
        t = sign_test(rec['per_edit'][mid], fast['per_edit'][fmid]); out['paired'] = dict(t, eta_recommended=mid, eta_fast=fmid)
        print(f"\npaired over the same {len(rec['per_edit'][mid])} edits at the middle η (recommended {mid}, fast {fmid}): "
              f"{t['only_first']} succeed only with the recommended settings, {t['only_second']} only with fast; "
              f"one-sided exact sign test that fast is worse: p = {t['p']:.3f}"
              f" ({'not ' if t['p'] >= 0.05 else ''}significant at 5%)")
    if args.json: Path(args.json).write_text(json.dumps(out, indent=1))


# ---------------------------------------------------------------- presets against the recommended settings, in turn
def alternate(args):
    "Fit seconds (stages 1+2, end to end) of the recommended settings and of each preset of `--presets`, alternating, `--alternate` rounds on one validation pose edit; medians and ratios."
    import statistics
    import imagic
    from imagic.core import encode_image, encode_text, image_size
    from imagic.stages import fit_stages
    from imagic.world import EDIT_KINDS, trained_on_details
    from imagic.world.edits import edit_input
    sys.path.insert(0, str(Path(__file__).parent))
    from sweep import chosen_edits
    pipe = imagic.load_pipeline(args.model, device=args.device)
    edit = next(e for e in chosen_edits(8, EDIT_KINDS, trained_on_details(pipe)) if e.kind == 'pose')
    _, x = edit_input(edit, image_size(pipe))
    lat, e_tgt = encode_image(pipe, x), encode_text(pipe, edit.text)
    configs = {'recommended': imagic.Settings.for_model(pipe), **{p: imagic.Settings.for_model(pipe, preset=p) for p in args.presets}}
    print(f"# stages 1+2 on {args.model}, one validation pose edit, {args.device} with {torch.get_num_threads()} threads, "
          f"{args.alternate} alternating rounds\n")
    secs = {c: [] for c in configs}
    for r in range(args.alternate):
        for c, s in configs.items():
            t0 = time.perf_counter(); fit_stages(pipe, lat, e_tgt, s, progress=False); secs[c].append(time.perf_counter() - t0)
        print(f"round {r + 1}: " + ', '.join(f'{c} {v[-1]:.1f} s' for c, v in secs.items()), flush=True)
    rec = statistics.median(secs['recommended'])
    print('\n| settings | steps (embed + joint + fine-tune) | median fit s | of recommended |\n|---|---|---|---|')
    for c, s in configs.items():
        m = statistics.median(secs[c])
        print(f"| {c} | {s.embed_steps} + {s.joint_steps} + {s.finetune_steps} ({s.finetune_method}) | {m:.1f} | {m / rec:.2f} |")
    if args.json: Path(args.json).write_text(json.dumps(dict(device=args.device, threads=torch.get_num_threads(), seconds=secs), indent=1))


# ---------------------------------------------------------------- the loop's own cost
def overhead(args, steps=60, runs=3):
    "imagic's stage-1 and stage-2 steps against the community-style loop on a tiny random SD model, batch 1, alternating runs; medians."
    import statistics, tempfile
    from imagic.core import encode_image, encode_text, load_pipeline
    from imagic.stages import finetune, optimize_embedding
    from imagic.testing import save_tiny_model
    pipe = load_pipeline(save_tiny_model(Path(tempfile.mkdtemp()) / 'tiny'), device=args.device)
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    lat, e = encode_image(pipe, x), encode_text(pipe, 'a blue bird')
    ours = {1: lambda: optimize_embedding(pipe, lat, e, steps=steps, lr=1e-3, progress=False),
            2: lambda: finetune(pipe, lat, e, steps=steps, lr=1e-4, progress=False)}
    def clock(f):
        t0 = time.perf_counter(); f(); return (time.perf_counter() - t0) / steps
    print(f'# per-step cost on a tiny random SD 1.x model ({args.device}, {torch.get_num_threads()} threads), batch 1, '
          f'{steps} steps, {runs} alternating runs, medians\n')
    print('| stage | imagic | community-style loop | ratio | bare forward+backward | imagic overhead | loop overhead |\n|---|---|---|---|---|---|---|')
    for stage in (1, 2):
        theirs = lambda: naive_stage(pipe, lat, e, steps, 1e-3, stage)
        ours[stage](); theirs()  # warm
        a, b, c = [], [], []
        for _ in range(runs):
            a.append(clock(ours[stage])); b.append(clock(theirs)); c.append(bare_steps(pipe, lat, e, steps, stage))
        ma, mb, mc = (statistics.median(v) for v in (a, b, c))
        print(f'| {stage} | {ma * 1e3:.2f} ms | {mb * 1e3:.2f} ms | {ma / mb:.2f}x | {mc * 1e3:.2f} ms | {(ma - mc) * 1e3:.2f} ms | {(mb - mc) * 1e3:.2f} ms |', flush=True)


if __name__ == '__main__':
    main()
