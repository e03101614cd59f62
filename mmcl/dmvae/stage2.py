"""DMVAE stage 2: conditional VAEs on the frozen content c (seed 003 §9.2.3-9.2.5).

For every modality i a conditional VAE with encoder q(m_i | x_i) and decoder p(x_i | c, m_i),
prior N(0, I) on m_i, maximises (Stage 2 objective of §9.2.5)

    E_{p(x) q_MoPoE(c | x)} [ L_ELBO(x_i | c) ] - delta_i * I_hat(c; m_i)

with the ELBO of Eq. 9.4 and the mutual-information estimate of Eq. 9.8,
``I_hat = E_joint[log D_i / (1 - D_i)]``, from a discriminator D_i trained with the binary
cross-entropy of Eq. 9.7 on joint pairs (c, m_i) against batch-permuted pairs.

Who updates what (§9.2.4/9.2.5):
* the stage-1 network q(c | x) is frozen (no gradients, kept in eval mode);
* the penalty delta_i * I_hat reaches only the encoder of m_i: it is evaluated through a
  detached copy of D_i's parameters, and the decoder does not take part in it;
* D_i is updated ``discriminator_steps`` times per training step (the thesis: once), after the
  VAE step, on the step's (c, m_i) detached, with a fresh permutation each time.

``mi_penalty``: ``density_ratio`` is the thesis' Eq. 9.8 through the critic; ``symmetric`` the
joint minus the permuted mean logit; ``hsic`` the normalised HSIC of (c, m_i) on the batch
(:func:`~mmcl.dmvae.losses.normalised_hsic`; delta then weighs a dependence in [0, 1], not nats;
D_i is still trained and logged). ``delta_scale: per_dimension`` (the default) makes the penalty
of modality i ``delta_i * D_i / reference_dimensions * I_hat`` (D_i = the dimensions its
log-likelihood sums over, reference 2 352, a 28x28x3 PolyMNIST image, where the thesis chose
delta = 400); ``none`` is the thesis' literal objective. ``penalty_input`` says which m the penalty
sees: ``sample`` (the draw the decoder gets), ``mean``, ``whitened_mean`` (the batch of means
decorrelated to unit covariance), ``both`` (the draw and the whitened means), ``posterior`` (the
draw and the whitened batch of (mean, log-variance) pairs) or ``all`` (the draw, the whitened
means and the whitened log-variances): a probe can read content from how noisy the draws are
as well as from where they are centred. What each choice
measured, and why the defaults are what they are: docs/dmvae/README.md, "Stage 2's options, as
measured".

``content_sampling`` picks the c the decoders are trained on: 'mopoe' (the thesis: a uniform
non-empty subset A per example, ``c ~ q_PoE(c | x_A)``), 'full' (``c ~ q_PoE(c | x)``) or
'mean' (the mean of the full-set posterior).

:class:`SpecificModule` composes the frozen content network, per-modality encoders, decoders and
discriminators, the losses of :mod:`mmcl.dmvae.losses` and two Adam optimisers; nothing else.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import nn
from torch.func import functional_call

from mmcl.dmvae.data import MODALITIES
from mmcl.dmvae.losses import (
    IMAGE_LIKELIHOODS,
    PENALTY_INPUTS,
    categorical_log_likelihood,
    discriminator_bce,
    elbo,
    hsic_penalty,
    image_log_likelihood,
    kl_standard_normal,
    mutual_information_estimate,
    permute_pairs,
    poe,
    sample_gaussian,
)
from mmcl.dmvae.networks import (
    AutoregressiveTextDecoder,
    Discriminator,
    ImageBackbone,
    ImageDecoder,
    TextDecoder,
    gaussian_image_encoder,
    gaussian_text_encoder,
)
from mmcl.dmvae.stage1 import ContentModule
from mmcl.encoders import Posterior, check_encoding_size
from mmcl.optim import ResumableRNG, check_schedule, scheduled
from mmcl.tokenizer import BOS, EOS, PAD

ContentSampling = Literal["mopoe", "full", "mean"]


def per_modality(value: Any, modalities: list[str], name: str) -> dict[str, Any]:
    """A scalar for every modality, or a mapping that names each of them exactly."""
    if isinstance(value, dict):
        missing = [m for m in modalities if m not in value]
        unknown = [m for m in value if m not in MODALITIES]
        if missing or unknown:
            raise ValueError(
                f"stage2.model.{name} must give every modality of {modalities} "
                f"(missing {missing}, unknown {unknown})"
            )
        return {m: value[m] for m in modalities}
    return {m: value for m in modalities}


def generate_data(
    decoder: nn.Module,
    modality: str,
    latent: torch.Tensor,
    greedy: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images in [0, 1] ``(B, 3, H, W)`` or token ids ``(B, L)`` from a decoder's latent: greedy
    (most likely token each step, used for coherence) or sampled (``greedy=False``, for grids).
    Shared by the DMVAE and the baselines (mmcl.dmvae.baselines)."""
    if modality == "image":
        return decoder(latent)
    if isinstance(decoder, AutoregressiveTextDecoder):
        return decoder.generate(latent, greedy, generator)
    logits = decoder(latent).float()
    if greedy:
        return logits.argmax(-1)
    flat = torch.softmax(logits, -1).flatten(0, 1).cpu()
    return torch.multinomial(flat, 1, generator=generator).view(logits.shape[:2]).to(logits.device)


def data_log_likelihood(
    decoder: nn.Module,
    modality: str,
    target: torch.Tensor,
    output: torch.Tensor,
    image_likelihood: str,
    image_scale: torch.Tensor,
    optimal_scale: bool = False,
    foreground_weight: float = 0.0,
) -> torch.Tensor:
    """log p(x | latent) per example of a decoder's ``output`` (image location or text logits);
    ``optimal_scale`` and ``foreground_weight`` as in :func:`mmcl.dmvae.losses.image_log_likelihood`."""
    if modality == "image":
        return image_log_likelihood(
            target, output, image_likelihood, image_scale, optimal_scale, foreground_weight
        )
    if isinstance(decoder, AutoregressiveTextDecoder):
        # the tokens after <bos> up to and including <eos>; the padding after it is implied
        later = target[:, 1:]
        return categorical_log_likelihood(output, later, mask=later != decoder.pad_id)
    return categorical_log_likelihood(output, target)


def check_options(
    *,
    content_hparams,
    modalities,
    delta,
    specific_size,
    content_sampling,
    image_likelihood,
    image_scale,
    optimal_image_scale,
    learn_image_scale,
    foreground_weight,
    delta_scale,
    reference_dimensions,
    discriminator_steps,
    mi_penalty,
    penalty_input,
    text_decoder,
    grad_clip,
    lr,
    discriminator_lr,
    lr_schedule,
    warmup_steps,
    **networks,
) -> tuple[list[str], dict[str, float], dict[str, int]]:
    """(modalities, delta and m size per modality) of :class:`SpecificModule`'s arguments (the
    sizes of its networks, ``networks``, are checked by the networks); a ``ValueError`` naming the
    first bad ``stage2.model`` key."""
    if not content_hparams:
        raise ValueError(
            "stage 2 needs the stage-1 model: train stage 1 first (`mmcl dmvae fit --stages 1`) "
            "or set stage1_checkpoint"
        )
    modalities = list(MODALITIES if modalities is None else modalities)
    if (
        not modalities
        or any(m not in MODALITIES for m in modalities)
        or len(set(modalities)) != len(modalities)
    ):
        raise ValueError(
            f"stage2.model.modalities must be distinct entries of {MODALITIES}, got {modalities}"
        )
    deltas = per_modality(delta, modalities, "delta")
    for m, d in deltas.items():
        if not isinstance(d, int | float) or isinstance(d, bool) or not d >= 0 or math.isinf(d):
            raise ValueError(f"stage2.model.delta must be a finite number >= 0, got {d!r} for {m}")
    sizes = per_modality(specific_size, modalities, "specific_size")
    for s in sizes.values():
        check_encoding_size(s)
    if content_sampling not in ("mopoe", "full", "mean"):
        raise ValueError(f"stage2.model.content_sampling must be mopoe|full|mean, got {content_sampling!r}")
    if image_likelihood not in IMAGE_LIKELIHOODS:
        raise ValueError(f"stage2.model.image_likelihood must be laplace|gaussian, got {image_likelihood!r}")
    if not image_scale > 0:
        raise ValueError(f"stage2.model.image_scale must be > 0, got {image_scale}")
    if optimal_image_scale and learn_image_scale:
        raise ValueError("stage2.model.optimal_image_scale and learn_image_scale exclude each other: set one")
    if (
        isinstance(foreground_weight, bool)
        or not isinstance(foreground_weight, int | float)
        or not foreground_weight >= 0
    ):
        raise ValueError(f"stage2.model.foreground_weight must be a number >= 0, got {foreground_weight!r}")
    if delta_scale not in ("per_dimension", "none"):
        raise ValueError(f"stage2.model.delta_scale must be per_dimension|none, got {delta_scale!r}")
    if not isinstance(reference_dimensions, int) or reference_dimensions < 1:
        raise ValueError(
            f"stage2.model.reference_dimensions must be an integer >= 1, got {reference_dimensions!r}"
        )
    if not isinstance(discriminator_steps, int) or discriminator_steps < 1:
        raise ValueError(
            f"stage2.model.discriminator_steps must be an integer >= 1, got {discriminator_steps!r}"
        )
    if mi_penalty not in ("density_ratio", "symmetric", "hsic"):
        raise ValueError(f"stage2.model.mi_penalty must be density_ratio|symmetric|hsic, got {mi_penalty!r}")
    if penalty_input not in PENALTY_INPUTS:
        raise ValueError(
            f"stage2.model.penalty_input must be {'|'.join(PENALTY_INPUTS)}, got {penalty_input!r}"
        )
    if penalty_input != "sample" and mi_penalty != "hsic":
        raise ValueError(
            f"stage2.model.penalty_input: {penalty_input} needs mi_penalty: hsic (a critic is trained "
            "on draws of m_i)"
        )
    if text_decoder not in ("autoregressive", "per_position"):
        raise ValueError(
            f"stage2.model.text_decoder must be autoregressive|per_position, got {text_decoder!r}"
        )
    if grad_clip < 0:
        raise ValueError(f"stage2.model.grad_clip must be >= 0, got {grad_clip}")
    check_schedule(lr, lr_schedule, warmup_steps, "stage2.model")
    check_schedule(discriminator_lr, lr_schedule, warmup_steps, "stage2.model.discriminator")
    return modalities, deltas, sizes


def build_networks(
    hp, chp, c_size: int, sizes: dict[str, int]
) -> tuple[nn.ModuleDict, nn.ModuleDict, nn.ModuleDict]:
    """The encoders q(m_i | x_i), decoders p(x_i | c, m_i) and critics D_i of the modalities of
    ``sizes`` (m_i's size each) from ``hp`` (SpecificModule's hyperparameters; ``chp``: stage 1's),
    built in the order that fixes their initial weights: per modality encoder, decoder, critic."""
    encoders, decoders, discriminators = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
    for m, size in sizes.items():  # in the order of the modalities
        if m == "image":
            encoders[m] = gaussian_image_encoder(
                size, chp.image_resolution, hp.image_backbone, hp.image_hidden_size, hp.image_base_channels
            )
            decoders[m] = ImageDecoder(
                c_size + size,
                chp.image_resolution,
                hp.decoder_base_channels,
                res_blocks=hp.decoder_res_blocks,
            )
        else:
            encoders[m] = gaussian_text_encoder(
                size,
                len(chp.vocabulary),
                chp.max_text_length,
                "convnet",
                hp.text_embedding_dim,
                hp.text_fbase,
            )
            if hp.text_decoder == "autoregressive":
                vocab = list(chp.vocabulary)
                decoders[m] = AutoregressiveTextDecoder(
                    c_size + size,
                    len(vocab),
                    chp.max_text_length,
                    hp.text_decoder_hidden,
                    hp.text_decoder_embedding_dim,
                    bos_id=vocab.index(BOS),
                    eos_id=vocab.index(EOS),
                    pad_id=vocab.index(PAD),
                )
            else:
                decoders[m] = TextDecoder(
                    c_size + size,
                    len(chp.vocabulary),
                    chp.max_text_length,
                    hp.text_decoder_hidden,
                    hp.text_decoder_position_size,
                )
        discriminators[m] = Discriminator(c_size, size, hp.discriminator_hidden, hp.discriminator_layers)
    return encoders, decoders, discriminators


class SpecificModule(ResumableRNG, pl.LightningModule):
    """Stage 2: per-modality conditional VAEs + MI discriminators on a frozen :class:`ContentModule`.

    Args:
        content_hparams: hyperparameters of the stage-1 :class:`ContentModule` (read from its
            checkpoint by ``mmcl dmvae fit``; the weights are loaded with :meth:`load_content`).
        modalities: the modalities that get a VAE ('image', 'text').
        specific_size: dimension of m_i (an int, or a mapping per modality).
        delta: Lagrange multiplier delta_i >= 0 of the MI penalty (400 in the thesis; a number or
            a mapping per modality). 0 trains plain conditional VAEs (D_i is still trained, so
            the leakage it measures is logged).
        delta_scale: 'per_dimension' (penalty ``delta_i * D_i / reference_dimensions``, see the
            module docstring) or 'none' (``delta_i`` as written).
        reference_dimensions: D of the modality the thesis chose delta for (28 x 28 x 3).
        discriminator_steps: critic updates per training step, each on a new permutation.
        mi_penalty: 'density_ratio' (Eq. 9.8), 'symmetric' (joint minus permuted mean logit) or
            'hsic' (normalised HSIC of the batch, no critic in the loss; D_i is still trained and
            logged).
        penalty_input: what of q(m_i | x_i) the HSIC penalty sees: 'sample' (the draw the decoder
            gets), 'mean' (its mean, what a probe of m_i reads), 'whitened_mean' (the batch of
            means decorrelated to unit covariance first) or 'both' (the sum of the 'sample' and
            'whitened_mean' penalties), 'posterior' (the draw and the whitened batch of (mean,
            log-variance) pairs) or 'all' (the draw, the whitened means and the whitened
            log-variances, three penalties summed); see the module docstring.
        content_sampling: 'mopoe' | 'full' | 'mean', see the module docstring.
        image_likelihood: 'laplace' or 'gaussian' on pixel intensities in [0, 1].
        image_scale: scale of the image likelihood (Laplace b or Gaussian sigma).
        learn_image_scale: learn one global log-scale with the VAE instead.
        optimal_image_scale: use each image's and channel's maximum-likelihood scale instead
            (the sigma-VAE's optimal sigma; :func:`mmcl.dmvae.losses.optimal_image_scale`).
        foreground_weight: W > 0 weighs the log-likelihood of the pixels that stand out from the
            image's border (:func:`mmcl.dmvae.losses.foreground_mask`) by 1 + W. With either of
            these two the image "log-likelihood" (and the ELBO eval reports) is the training
            objective, not a normalised density; docs/dmvae/README.md has what they buy.
        image_backbone, image_hidden_size, image_base_channels: the q(m_img | x_img) encoder.
        decoder_base_channels: channels of the last transposed convolution (doubled towards
            the input, at most 256).
        decoder_res_blocks: 3x3 residual layers after each upsampling of the image decoder
            (:class:`~mmcl.dmvae.networks.ImageDecoder`; 0 = the plain stack).
        text_embedding_dim, text_fbase: the ConvNet encoder of q(m_txt | x_txt).
        text_decoder: 'autoregressive' (GRU, teacher forcing; the default) or 'per_position'
            (the earlier MLP with a categorical per position).
        text_decoder_hidden: hidden size of the GRU / of the per-position MLP.
        text_decoder_embedding_dim: token embedding of the GRU decoder.
        text_decoder_position_size: feature size per position of the per-position decoder.
        discriminator_hidden, discriminator_layers: the MLPs D_i.
        lr, discriminator_lr, weight_decay, lr_schedule, warmup_steps: the two Adam optimisers.
        grad_clip: 2-norm clipping of the VAE gradients (0 = off).
    """

    def __init__(
        self,
        content_hparams: dict[str, Any] | None = None,
        modalities: list[str] | None = None,
        specific_size: int | dict[str, int] = 32,
        delta: float | dict[str, float] = 400.0,
        delta_scale: Literal["per_dimension", "none"] = "per_dimension",
        reference_dimensions: int = 2352,
        discriminator_steps: int = 5,
        mi_penalty: Literal["density_ratio", "symmetric", "hsic"] = "density_ratio",
        penalty_input: Literal["sample", "mean", "whitened_mean", "both", "posterior", "all"] = "sample",
        content_sampling: ContentSampling = "mopoe",
        image_likelihood: Literal["laplace", "gaussian"] = "laplace",
        image_scale: float = 0.1,
        learn_image_scale: bool = False,
        optimal_image_scale: bool = False,
        foreground_weight: float = 0.0,
        image_backbone: ImageBackbone = "convnet",
        image_hidden_size: int = 256,
        image_base_channels: int = 32,
        decoder_base_channels: int = 16,
        decoder_res_blocks: int = 0,
        text_embedding_dim: int = 64,
        text_fbase: int = 16,
        text_decoder: Literal["autoregressive", "per_position"] = "autoregressive",
        text_decoder_hidden: int = 256,
        text_decoder_embedding_dim: int = 64,
        text_decoder_position_size: int = 64,
        discriminator_hidden: int = 256,
        discriminator_layers: int = 3,
        lr: float = 1e-3,
        discriminator_lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        warmup_steps: int = 0,
        grad_clip: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        modalities, deltas, sizes = check_options(**self.hparams)
        self.automatic_optimization = False
        self.modalities = modalities
        self.deltas = {m: float(d) for m, d in deltas.items()}
        self.specific_sizes = sizes

        self.content_model = ContentModule(**content_hparams)
        self.content_model.requires_grad_(False)
        self.content_model.eval()
        chp = self.content_model.hparams
        self.dimensions = {
            m: 3 * chp.image_resolution**2 if m == "image" else chp.max_text_length for m in modalities
        }
        # the weight that multiplies I_hat(c; m_i) in the loss (module docstring)
        self.penalty_weights = {
            m: d * (self.dimensions[m] / reference_dimensions if delta_scale == "per_dimension" else 1.0)
            for m, d in self.deltas.items()
        }
        self.encoders, self.decoders, self.discriminators = build_networks(
            self.hparams, chp, self.content_model.encoding_size, sizes
        )
        self.image_log_scale = nn.Parameter(
            torch.tensor(math.log(image_scale)), requires_grad=learn_image_scale
        )
        # (N, 2, M, d): mean and logvar of every expert q(c | x_i) for the training split by sample
        # index, filled by ``mmcl.dmvae.fit.ContentCache`` (stage 1 is frozen and in eval mode, so
        # the cached posteriors equal recomputed ones); not part of the checkpoint
        self.content_cache: torch.Tensor | None = None
        self.discriminator_optimizer: torch.optim.Optimizer | None = None
        self._pending_discriminator_state: dict | None = None

    # ------------------------------------------------------------------ setup
    def load_content(self, content: ContentModule) -> None:
        """Copy the weights of a trained stage-1 model (same hyperparameters) into the frozen copy."""
        self.content_model.load_state_dict(content.state_dict())
        self.content_model.requires_grad_(False)
        self.content_model.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.content_model.eval()  # frozen: batch norm keeps its stage-1 statistics
        return self

    @property
    def content_size(self) -> int:
        return self.content_model.encoding_size

    @property
    def image_scale(self) -> torch.Tensor:
        return self.image_log_scale.exp()

    # ------------------------------------------------------------------ model
    def inputs(self, modality: str, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder input, likelihood target) of one modality."""
        if modality == "image":
            return batch["image"], batch["image01"]
        return batch["text"], batch["text"]

    @torch.no_grad()
    def experts(self, batch: dict, use_cache: bool = False) -> Posterior:
        """The unimodal posteriors q(c | x_i), ``(B, M, d)``, from the cache when asked and filled."""
        if use_cache and self.content_cache is not None:
            cached = self.content_cache[batch["index"].to(self.content_cache.device)]
            return Posterior(cached[:, 0], cached[:, 1])
        return self.content_model.experts(batch["image"], batch["text"])

    @torch.no_grad()
    def content(
        self, batch: dict, generator: torch.Generator | None = None, use_cache: bool = False
    ) -> torch.Tensor:
        """The c the decoders are trained on (``content_sampling``), without gradients."""
        experts = self.experts(batch, use_cache)
        mode = self.hparams.content_sampling
        if mode == "mopoe":
            return self.content_model.mopoe_sample(experts, generator)[0]
        full = poe(experts.mean, experts.logvar, prior_expert=self.content_model.hparams.prior_expert)
        return full.mean if mode == "mean" else sample_gaussian(full, generator)

    def encode_specific(self, modality: str, x: torch.Tensor) -> Posterior:
        return self.encoders[modality](x)

    @property
    def autoregressive_text(self) -> bool:
        return self.hparams.text_decoder == "autoregressive"

    def decode(
        self, modality: str, content: torch.Tensor, specific: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Image: the likelihood location in [0, 1]; text: logits, ``(B, L - 1, V)`` of tokens
        1.. given the ``target`` tokens before them (autoregressive, teacher forcing) or
        ``(B, L, V)`` per position."""
        latent = torch.cat([content, specific], dim=-1)
        if modality == "text" and self.autoregressive_text:
            if target is None:
                raise ValueError("the autoregressive text decoder needs the target tokens (teacher forcing)")
            return self.decoders[modality](latent, target)
        return self.decoders[modality](latent)

    @torch.no_grad()
    def generate(
        self,
        modality: str,
        content: torch.Tensor,
        specific: torch.Tensor,
        greedy: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Images in [0, 1] ``(B, 3, H, W)`` or token ids ``(B, L)``: greedy (most likely token
        each step, used for coherence) or sampled (``greedy=False``, for grids)."""
        latent = torch.cat([content, specific], dim=-1)
        return generate_data(self.decoders[modality], modality, latent, greedy, generator)

    def log_likelihood(self, modality: str, target: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return data_log_likelihood(
            self.decoders[modality], modality, target, output, self.hparams.image_likelihood, self.image_scale,
            # checkpoints from before issue 29 lack both: the fixed-scale, unweighted likelihood
            self.hparams.get("optimal_image_scale", False), self.hparams.get("foreground_weight", 0.0),
        )  # fmt: skip

    def mutual_information(
        self, modality: str, content: torch.Tensor, specific: torch.Tensor
    ) -> torch.Tensor:
        """The penalised estimate through D_i with detached parameters (its gradient reaches only
        ``specific``): Eq. 9.8, or with ``mi_penalty: symmetric`` the mean joint logit minus the
        mean logit on batch-permuted pairs (see the module docstring); with ``hsic`` the critic's
        estimate is only logged, and it is the symmetric one (the committed hsic runs were made so)."""
        disc = self.discriminators[modality]
        params = {k: v.detach() for k, v in disc.named_parameters()}
        c = content.detach()
        joint = mutual_information_estimate(functional_call(disc, params, (c, specific)))
        if self.hparams.mi_penalty == "density_ratio":
            return joint
        return joint - functional_call(disc, params, (c, permute_pairs(specific))).mean()

    def vae_terms(
        self, modality: str, batch: dict, content: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-example ELBO terms (Eq. 9.4) and the MI estimate (Eq. 9.8) of one modality."""
        x, target = self.inputs(modality, batch)
        q_m = self.encode_specific(modality, x)
        specific = sample_gaussian(q_m, generator)
        output = self.decode(modality, content, specific, target)
        log_lik = self.log_likelihood(modality, target, output)
        kl = kl_standard_normal(q_m)
        mi = self.mutual_information(modality, content, specific)
        return {
            "log_likelihood": log_lik,
            "kl": kl,
            "elbo": elbo(log_lik, kl),
            "mi": mi,
            # what delta_i multiplies: the critic's estimate, or with hsic the batch's dependence
            "penalty": self.hsic_penalty(content.detach(), q_m, specific)
            if self.hparams.mi_penalty == "hsic"
            else mi,
            "specific": specific,
        }

    def hsic_penalty(self, content: torch.Tensor, q_m: Posterior, specific: torch.Tensor) -> torch.Tensor:
        """Normalised HSIC of c with what ``penalty_input`` names of q(m_i | x_i)."""
        return hsic_penalty(content, q_m, specific, self.hparams.get("penalty_input", "sample"))

    def discriminator_loss(
        self, modality: str, content: torch.Tensor, specific: torch.Tensor, generator=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(Eq. 9.7 loss, accuracy) of D_i on detached joint vs batch-permuted pairs."""
        disc = self.discriminators[modality]
        c, m = content.detach(), specific.detach()
        joint, marginal = disc(c, m), disc(c, permute_pairs(m, generator))
        acc = 0.5 * ((joint > 0).float().mean() + (marginal < 0).float().mean())
        return discriminator_bce(joint, marginal), acc

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_vae = self.optimizers()
        content = self.content(batch, use_cache=True)
        n = content.shape[0]
        total = content.new_zeros(())
        specifics = {}
        for m in self.modalities:
            terms = self.vae_terms(m, batch, content)
            loss_m = -terms["elbo"].mean() + self.penalty_weights[m] * terms["penalty"]
            total = total + loss_m
            specifics[m] = terms["specific"]
            self.log(
                f"stage2/{m}/elbo",
                terms["elbo"].mean().detach(),
                on_step=True,
                prog_bar=m == "image",
                batch_size=n,
            )
            self.log(f"stage2/{m}/kl", terms["kl"].mean().detach(), on_step=True, batch_size=n)
            self.log(f"stage2/{m}/mi", terms["mi"].detach(), on_step=True, prog_bar=True, batch_size=n)
        opt_vae.zero_grad(set_to_none=True)
        self.manual_backward(total)
        if self.hparams.grad_clip > 0:
            self.clip_gradients(
                opt_vae, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm"
            )
        opt_vae.step()
        self.lr_schedulers().step()
        # the discriminators (Eq. 9.7): discriminator_steps updates on this step's pairs, each
        # with a new permutation for the product of marginals
        for _ in range(self.hparams.discriminator_steps):
            d_total = content.new_zeros(())
            accs = {}
            for m in self.modalities:
                d_loss, accs[m] = self.discriminator_loss(m, content, specifics[m])
                d_total = d_total + d_loss
            self.discriminator_optimizer.zero_grad(set_to_none=True)
            d_total.backward()
            self.discriminator_optimizer.step()
        for m, acc in accs.items():
            self.log(f"stage2/{m}/disc_acc", acc, on_step=True, batch_size=n)
        self.log("stage2/train_loss", total.detach(), on_step=True, batch_size=n)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        generator = torch.Generator().manual_seed(batch_idx)
        content = self.content(batch, generator)
        n = content.shape[0]
        for m in self.modalities:
            terms = self.vae_terms(m, batch, content, generator)
            _, d_acc = self.discriminator_loss(m, content, terms["specific"], generator)
            self.log(
                f"stage2/val_{m}_elbo",
                terms["elbo"].mean(),
                on_epoch=True,
                prog_bar=True,
                batch_size=n,
                sync_dist=True,
            )
            self.log(f"stage2/val_{m}_mi", terms["mi"], on_epoch=True, batch_size=n, sync_dist=True)
            self.log(f"stage2/val_{m}_disc_acc", d_acc, on_epoch=True, batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        """The VAE optimiser goes to Lightning (one optimiser step = one training step, so
        ``trainer.max_steps`` counts training steps); the discriminators' Adam is the module's
        own and travels in the checkpoint under ``discriminator_optimizer``."""
        hp = self.hparams
        vae_params = [
            p
            for n, p in self.named_parameters()
            if p.requires_grad and not n.startswith(("discriminators.", "content_model."))
        ]
        opt_vae = torch.optim.Adam(vae_params, lr=hp.lr, weight_decay=hp.weight_decay)
        self.discriminator_optimizer = torch.optim.Adam(
            self.discriminators.parameters(), lr=hp.discriminator_lr
        )
        if self._pending_discriminator_state is not None:
            self.discriminator_optimizer.load_state_dict(self._pending_discriminator_state)
            self._pending_discriminator_state = None
        return scheduled(opt_vae, self, "stage2.trainer")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.save_rng(checkpoint)
        if self.discriminator_optimizer is not None:
            checkpoint["discriminator_optimizer"] = self.discriminator_optimizer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # called before configure_optimizers when a run resumes
        self.load_rng(checkpoint)
        self._pending_discriminator_state = checkpoint.get("discriminator_optimizer")
