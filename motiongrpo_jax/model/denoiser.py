"""EgoAllo's x0-predicting motion denoiser (`EgoDenoiser`) in Flax Linen.

Architecture (token noise conditioning, RoPE, `kv_from_cond_q_from_x`):
  * one MLP encoder per packed field, summed into d_latent motion tokens;
  * the Fourier-encoded head-pose condition projected to d_latent;
  * a noise token (embedding row t−1, projected) prepended to both streams;
  * an encoder stack over the condition stream (self-attention) and a decoder
    stack over the motion stream (self-attention, then cross-attention whose
    keys/values come from the final condition stream);
  * post-LayerNorm blocks, bias-free attention projections, interleaved RoPE
    on q and k with token positions 0..N−1 (the noise token is position 0),
    exact-erf GELU; one MLP decoder per field; the packed x0 prediction.

Parameter names follow EgoAllo's state dict with '.' → '_' at module level
(`encoder_layers.3.mlp0.weight` → `encoder_layers_3/mlp0/kernel`, transposed;
the MLP index k of `encoders.<field>.k` becomes `linear_k` / `layernorm_k`);
`model/egoallo_import.py` holds the exact mapping.

Unlike EgoAllo, the attention mask (B, T) is honoured in self-attention too
(`mask_self_attention=False` reproduces EgoAllo, whose self-attention ignores
it); with mask=None both agree.

With `mutable=["intermediates"]`, `apply` also returns the values EgoAllo's
golden files record (`cond_raw`, `cond_features`, `cond_latent`,
`noise_embedding` (golden `noise_emb`), `noise_token`, `x_enc_<field>`,
`x_t_encoded`, `encoder_in`, `decoder_in`, `pre_decoder_latent`, and per block
`sattn_qk_prerope` / `sattn_qk_rope` (B, N, 2, H, dh), `sattn_out`,
`xattn_out`, `mlp_out`, `out`); unused, they cost nothing under jit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from motiongrpo_jax.model import conditioning
from motiongrpo_jax.model import packing


@dataclasses.dataclass(frozen=True)
class DenoiserConfig:
  """Denoiser hyperparameters: EgoAllo's `EgoDenoiserConfig` plus our own.

  Defaults are EgoAllo's (the released model's architecture, ~50.4 M params).
  """
  # Maximum diffusion step; rows of the noise-embedding table (t ∈ 1..max_t).
  max_t: int = 1000
  # Octaves of the condition's Fourier encoding.
  fourier_enc_freqs: int = 3
  # Token width D.
  d_latent: int = 512
  # Hidden width of each block's MLP.
  d_feedforward: int = 2048
  # Width of the noise-embedding table.
  d_noise_emb: int = 1024
  # Attention heads (head dim D / num_heads, even for RoPE).
  num_heads: int = 4
  # Blocks over the condition stream (self-attention only).
  encoder_layers: int = 6
  # Blocks over the motion stream (self- and cross-attention).
  decoder_layers: int = 6
  # Dropout probability; only 0 is supported (EgoAllo's default).
  dropout_p: float = 0.0
  # Nonlinearity everywhere: "gelu" (exact erf form) or "relu".
  activation: str = "gelu"
  # Positional encoding; only "rope" is supported.
  positional_encoding: str = "rope"
  # How the noise level enters; only "token" is supported.
  noise_conditioning: str = "token"
  # Cross-attention roles; only "kv_from_cond_q_from_x" is supported.
  xattn_mode: str = "kv_from_cond_q_from_x"
  # Append the yaw-free CPF rotation (9) to the raw condition (22 vs 13).
  include_canonicalized_cpf_rotation_in_cond: bool = True
  # Condition parameterisation; only "ours" is supported.
  cond_param: str = "ours"
  # Add 6 hand-position numbers to the condition; only False is supported.
  include_hand_positions_cond: bool = False
  # Whether the packed state carries 30 hand rotations (d 496 vs 226).
  include_hands: bool = True
  # --- Our own fields. ---
  # Matmul input dtype: "float32" (exact, HIGHEST precision) or "bfloat16"
  # (inputs cast to bf16, fp32 accumulation; params and all else stay fp32).
  matmul_dtype: str = "float32"
  # Honour the frame mask in self-attention too. False reproduces EgoAllo,
  # whose self-attention ignores the mask (cross-attention always honours it).
  mask_self_attention: bool = True

  @property
  def packed_dim(self) -> int:
    """Size d of the packed state: 496 with hands, 226 without."""
    return packing.packed_dim(self.include_hands)

  @property
  def d_cond(self) -> int:
    """Size of the Fourier-encoded condition (154 by default)."""
    return conditioning.condition_dim(self)

  @property
  def head_dim(self) -> int:
    """Per-head width D / num_heads."""
    return self.d_latent // self.num_heads

  def validate(self) -> "DenoiserConfig":
    """Raises ValueError naming the option for any unsupported value."""
    supported = {
        "positional_encoding": ("rope",),
        "noise_conditioning": ("token",),
        "xattn_mode": ("kv_from_cond_q_from_x",),
        "cond_param": ("ours",),
        "activation": ("gelu", "relu"),
        "matmul_dtype": ("float32", "bfloat16"),
        "include_hand_positions_cond": (False,),
    }
    for name, allowed in supported.items():
      value = getattr(self, name)
      if value not in allowed:
        raise ValueError(
            f"DenoiserConfig.{name}={value!r} is not supported; expected one "
            f"of {allowed}")
    if self.dropout_p != 0.0:
      raise ValueError(
          f"DenoiserConfig.dropout_p={self.dropout_p!r} is not supported; "
          "expected 0.0")
    for name in ("max_t", "fourier_enc_freqs", "d_latent", "d_feedforward",
                 "d_noise_emb", "num_heads"):
      if getattr(self, name) < 1:
        raise ValueError(f"DenoiserConfig.{name} must be ≥ 1, got "
                         f"{getattr(self, name)}")
    for name in ("encoder_layers", "decoder_layers"):
      if getattr(self, name) < 0:
        raise ValueError(f"DenoiserConfig.{name} must be ≥ 0")
    if self.d_latent % self.num_heads or self.head_dim % 2:
      raise ValueError(
          f"DenoiserConfig.d_latent={self.d_latent} must split into "
          f"num_heads={self.num_heads} heads of even width (for RoPE)")
    return self

  def to_dict(self) -> dict[str, Any]:
    """All fields as a JSON-friendly dict."""
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> "DenoiserConfig":
    """Builds a config; unknown keys raise ValueError naming them."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
      raise ValueError(f"unknown DenoiserConfig fields: {unknown}")
    return cls(**values).validate()


# ----------------------------------------------------------------------------
# Numerics shared by all layers.


def _matmul_dtype(config: DenoiserConfig) -> Any:
  return jnp.bfloat16 if config.matmul_dtype == "bfloat16" else jnp.float32


def _einsum(spec: str, a: jax.Array, b: jax.Array,
            config: DenoiserConfig) -> jax.Array:
  """einsum with fp32 output: exact fp32, or bf16 inputs + fp32 accumulation."""
  dtype = _matmul_dtype(config)
  if dtype == jnp.float32:
    return jnp.einsum(spec, a, b, precision=jax.lax.Precision.HIGHEST,
                      preferred_element_type=jnp.float32)
  return jnp.einsum(spec, a.astype(dtype), b.astype(dtype),
                    preferred_element_type=jnp.float32)


def _activation(config: DenoiserConfig) -> Callable[[jax.Array], jax.Array]:
  if config.activation == "relu":
    return jax.nn.relu
  return _gelu


@jax.named_scope("gelu")  # Names the profile's ops (`tools/op_profile.py`).
def _gelu(x: jax.Array) -> jax.Array:
  return jax.nn.gelu(x, approximate=False)


def _torch_uniform(fan_in: int) -> Callable[..., jax.Array]:
  """PyTorch's default Linear init U(−1/√fan_in, 1/√fan_in) (weight and bias)."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class Linear(nn.Module):
  """y = x·kernel (+ bias), kernel (in, out); PyTorch default init."""
  features: int
  config: DenoiserConfig
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = x.shape[-1]
    kernel = self.param("kernel", _torch_uniform(fan_in),
                        (fan_in, self.features))
    y = _einsum("...i,io->...o", x, kernel, self.config)
    if self.use_bias:
      y = y + self.param("bias", _torch_uniform(fan_in), (self.features,))
    return y


def _layer_norm(name: str) -> nn.LayerNorm:
  # Two-pass (biased) variance as torch.nn.LayerNorm, ε = 1e-5.
  return nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name=name)


def cast_kernels(params: Any, config: DenoiserConfig) -> Any:
  """Casts matmul weights (kernels, the noise table) to `config.matmul_dtype`.

  With `matmul_dtype="bfloat16"` the forward casts every kernel on each call;
  casting them once up front (biases and LayerNorms stay float32) saves that
  memory traffic in a sampler loop and gives the same outputs.

  Args:
    params: the params tree of `Denoiser(config)`.
    config: the model config.

  Returns:
    The params tree with `kernel`/`embedding` leaves cast.
  """
  dtype = _matmul_dtype(config)
  flat = flax.traverse_util.flatten_dict(params)
  return flax.traverse_util.unflatten_dict({
      path: value.astype(dtype) if path[-1] in ("kernel", "embedding") else value
      for path, value in flat.items()})


# ----------------------------------------------------------------------------
# Attention.


def rope_tables(num_tokens: int, head_dim: int) -> tuple[np.ndarray, np.ndarray]:
  """cos/sin of the RoPE angles φ[p, i] = float32(p)·f_i, f_i = 10000^(−2i/dh).

  Args:
    num_tokens: N; positions are 0..N−1 (the noise token is position 0).
    head_dim: dh (even).

  Returns:
    cos, sin: (N, dh/2) float32 constants.
  """
  freqs = rope_frequencies(head_dim)
  angles = np.arange(num_tokens, dtype=np.float32)[:, None] * freqs
  return np.cos(angles), np.sin(angles)


def rope_frequencies(head_dim: int) -> np.ndarray:
  """f_i = 1/10000^(2i/dh), i = 0..dh/2−1, float32 (`rotary_emb.freqs`)."""
  exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
  return (np.float32(1.0) / np.power(np.float32(10000.0), exponents)).astype(
      np.float32)


@jax.named_scope("rope")
def apply_rope(x: jax.Array, cos: np.ndarray, sin: np.ndarray) -> jax.Array:
  """Interleaved RoPE: dims (2i, 2i+1) rotate together by φ_i.

  Args:
    x: (B, N, ..., dh); the token axis is 1.
    cos: (N, dh/2).
    sin: (N, dh/2).

  Returns:
    (B, N, ..., dh).
  """
  pairs = x.reshape(x.shape[:-1] + (x.shape[-1] // 2, 2))
  extra = (1,) * (x.ndim - 3)
  c = cos.reshape(cos.shape[:1] + extra + cos.shape[1:])
  s = sin.reshape(sin.shape[:1] + extra + sin.shape[1:])
  even, odd = pairs[..., 0], pairs[..., 1]
  out = jnp.stack([even * c - odd * s, odd * c + even * s], axis=-1)
  return out.reshape(x.shape)


@jax.named_scope("attention")
def attend(q: jax.Array, k: jax.Array, v: jax.Array,
           key_mask: jax.Array | None, config: DenoiserConfig) -> jax.Array:
  """Scaled dot-product attention, softmax in float32.

  Args:
    q: (B, Nq, H, dh).
    k: (B, Nk, H, dh).
    v: (B, Nk, H, dh).
    key_mask: (B, Nk) bool (True = attend), or None.
    config: numerics.

  Returns:
    (B, Nq, H·dh), heads concatenated in order.
  """
  q = q * jnp.float32(1.0 / math.sqrt(q.shape[-1]))
  scores = _einsum("bqhd,bkhd->bhqk", q, k, config)
  if key_mask is not None:
    scores = jnp.where(key_mask[:, None, None, :], scores, -jnp.inf)
  with jax.named_scope("softmax"):
    probs = jax.nn.softmax(scores, axis=-1)
  out = _einsum("bhqk,bkhd->bqhd", probs, v, config)
  return out.reshape(out.shape[:2] + (-1,))


class Block(nn.Module):
  """A post-LayerNorm transformer block (EgoAllo's `TransformerBlock`).

  x = LN1(x + SelfAttn(x)); [x = LN_x(x + CrossAttn(x, cond))];
  x = LN2(x + mlp1(act(mlp0(x)))).
  """
  config: DenoiserConfig
  cross_attention: bool

  @nn.compact
  def __call__(self, x: jax.Array, rope: tuple[np.ndarray, np.ndarray],
               self_mask: jax.Array | None, cond: jax.Array | None = None,
               cond_mask: jax.Array | None = None) -> jax.Array:
    """Applies the block.

    Args:
      x: (B, N, D) token stream.
      rope: (cos, sin) tables, each (N, dh/2).
      self_mask: (B, N) bool keys to attend to in self-attention, or None.
      cond: (B, N, D) keys/values for cross-attention (decoder blocks).
      cond_mask: (B, N) bool keys to attend to in cross-attention, or None.

    Returns:
      (B, N, D).
    """
    cfg = self.config
    batch, num_tokens, width = x.shape
    heads, head_dim = cfg.num_heads, cfg.head_dim
    cos, sin = rope

    # Self-attention: one fused projection to [q | k | v].
    qkv = Linear(3 * width, cfg, use_bias=False, name="sattn_qkv_proj")(x)
    qkv = qkv.reshape(batch, num_tokens, 3, heads, head_dim)
    qk = apply_rope(qkv[:, :, :2], cos, sin)
    self.sow("intermediates", "sattn_qk_prerope", qkv[:, :, :2])
    self.sow("intermediates", "sattn_qk_rope", qk)
    attn = attend(qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2], self_mask, cfg)
    attn = Linear(width, cfg, use_bias=False, name="sattn_out_proj")(attn)
    self.sow("intermediates", "sattn_out", attn)
    x = _layer_norm("layernorm1")(x + attn)

    if self.cross_attention:
      kv = Linear(2 * width, cfg, use_bias=False, name="xattn_kv_proj")(cond)
      kv = kv.reshape(batch, cond.shape[1], 2, heads, head_dim)
      q = Linear(width, cfg, use_bias=False, name="xattn_q_proj")(x)
      q = apply_rope(q.reshape(batch, num_tokens, heads, head_dim), cos, sin)
      k = apply_rope(kv[:, :, 0], cos, sin)
      attn = attend(q, k, kv[:, :, 1], cond_mask, cfg)
      attn = Linear(width, cfg, use_bias=False, name="xattn_out_proj")(attn)
      self.sow("intermediates", "xattn_out", attn)
      x = _layer_norm("xattn_layernorm")(x + attn)

    hidden = _activation(cfg)(Linear(cfg.d_feedforward, cfg, name="mlp0")(x))
    mlp = Linear(width, cfg, name="mlp1")(hidden)
    self.sow("intermediates", "mlp_out", mlp)
    x = _layer_norm("layernorm2")(x + mlp)
    self.sow("intermediates", "out", x)
    return x


class ModalityEncoder(nn.Module):
  """Linear(m→D) → act → Linear(D→D) → act → Linear(D→D)."""
  config: DenoiserConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg, act = self.config, _activation(self.config)
    x = act(Linear(cfg.d_latent, cfg, name="linear_0")(x))
    x = act(Linear(cfg.d_latent, cfg, name="linear_2")(x))
    return Linear(cfg.d_latent, cfg, name="linear_4")(x)


class ModalityDecoder(nn.Module):
  """Linear(D→D) → LN → act → Linear(D→D) → act → Linear(D→m)."""
  config: DenoiserConfig
  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg, act = self.config, _activation(self.config)
    x = Linear(cfg.d_latent, cfg, name="linear_0")(x)
    x = act(_layer_norm("layernorm_1")(x))
    x = act(Linear(cfg.d_latent, cfg, name="linear_3")(x))
    return Linear(self.features, cfg, name="linear_5")(x)


class Denoiser(nn.Module):
  """EgoAllo's denoiser: predicts the clean packed state x0."""
  config: DenoiserConfig

  @nn.compact
  def __call__(self,
               x_t_packed: jax.Array,
               t: jax.Array,
               T_world_cpf: jax.Array,
               T_cpf_tm1_cpf_t: jax.Array,
               mask: jax.Array | None = None,
               project_output_rotmats: bool = False) -> jax.Array:
    """Predicts x0.

    Args:
      x_t_packed: (B, T, d) noisy packed state.
      t: (B,) integer diffusion steps in 1..max_t (row t−1 of the table).
      T_world_cpf: (B, T, 7) CPF poses, z relative to the floor.
      T_cpf_tm1_cpf_t: (B, T, 7) CPF motion from the previous frame.
      mask: (B, T) bool valid frames, or None (all valid).
      project_output_rotmats: replace body and hand 3×3 blocks by U·Vᵀ.

    Returns:
      (B, T, d) x0 prediction, float32.
    """
    cfg = self.config.validate()
    batch, num_frames, dim = x_t_packed.shape
    if dim != cfg.packed_dim:
      raise ValueError(
          f"x_t_packed has last dim {dim}, expected {cfg.packed_dim} "
          f"(include_hands={cfg.include_hands})")
    if T_world_cpf.shape != (batch, num_frames, 7):
      raise ValueError(f"T_world_cpf has shape {T_world_cpf.shape}, expected "
                       f"{(batch, num_frames, 7)}")
    if T_cpf_tm1_cpf_t.shape != (batch, num_frames, 7):
      raise ValueError(f"T_cpf_tm1_cpf_t has shape {T_cpf_tm1_cpf_t.shape}, "
                       f"expected {(batch, num_frames, 7)}")
    x_t_packed = x_t_packed.astype(jnp.float32)

    # Condition stream.
    cond_raw = conditioning.condition_raw(
        T_world_cpf, T_cpf_tm1_cpf_t,
        cfg.include_canonicalized_cpf_rotation_in_cond)
    cond = conditioning.features_from_raw(cond_raw, cfg)
    self.sow("intermediates", "cond_raw", cond_raw)
    self.sow("intermediates", "cond_features", cond)
    cond_latent = Linear(cfg.d_latent, cfg, name="latent_from_cond")(cond)
    self.sow("intermediates", "cond_latent", cond_latent)

    # Noise token.
    noise_emb = nn.Embed(cfg.max_t, cfg.d_noise_emb, name="noise_emb",
                         embedding_init=nn.initializers.normal(1.0))(t - 1)
    token = Linear(cfg.d_latent, cfg, use_bias=False,
                   name="noise_emb_token_proj")(noise_emb)
    self.sow("intermediates", "noise_embedding", noise_emb)
    self.sow("intermediates", "noise_token", token)

    # Motion stream: per-field encoders, summed in packing order.
    x_encoded = None
    start = 0
    for name, size in packing.modalities(cfg.include_hands):
      enc = ModalityEncoder(cfg, name=f"encoders_{name}")(
          x_t_packed[..., start:start + size])
      self.sow("intermediates", f"x_enc_{name}", enc)
      x_encoded = enc if x_encoded is None else x_encoded + enc
      start += size
    self.sow("intermediates", "x_t_encoded", x_encoded)

    token = token[:, None, :]
    stream_cond = jnp.concatenate([token, cond_latent], axis=1)
    stream_x = jnp.concatenate([token, x_encoded], axis=1)
    self.sow("intermediates", "encoder_in", stream_cond)
    self.sow("intermediates", "decoder_in", stream_x)

    rope = rope_tables(num_frames + 1, cfg.head_dim)
    key_mask = None
    if mask is not None:
      key_mask = jnp.concatenate(
          [jnp.ones((batch, 1), bool), mask.astype(bool)], axis=1)
    self_mask = key_mask if cfg.mask_self_attention else None

    for i in range(cfg.encoder_layers):
      stream_cond = Block(cfg, cross_attention=False,
                          name=f"encoder_layers_{i}")(stream_cond, rope,
                                                      self_mask)
    for i in range(cfg.decoder_layers):
      stream_x = Block(cfg, cross_attention=True, name=f"decoder_layers_{i}")(
          stream_x, rope, self_mask, cond=stream_cond, cond_mask=key_mask)

    latent = stream_x[:, 1:]
    self.sow("intermediates", "pre_decoder_latent", latent)
    out = jnp.concatenate([
        ModalityDecoder(cfg, size, name=f"decoders_{name}")(latent)
        for name, size in packing.modalities(cfg.include_hands)
    ], axis=-1)
    if project_output_rotmats:
      out = packing.project_all_rotmats(out, cfg.include_hands)
    return out
