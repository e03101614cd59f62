"""Joint multimodal VAE baselines on the DMVAE's networks: MVAE, MMVAE, MoPoE-VAE, MMVAE+
(seed 003 §9.3, Table 9.1; seed 002 for MoPoE; seed 001 for impartial optimisation).

One :class:`BaselineModule` trains a shared latent z (and, for MMVAE+, modality-specific latents
w_i) end to end with the objective named by ``objective`` (:mod:`mmcl.dmvae.losses`, "joint
multimodal VAEs"): ``mvae`` (product of experts with the prior expert, sub-sampled ELBOs),
``mmvae`` (mixture of experts, stratified ELBO with the mixture density), ``mopoe`` (mixture of
the subsets' products) and ``mmvae_plus`` (MMVAE with w_i and an auxiliary prior for the cross
reconstructions). Encoders and decoders are the DMVAE's (:mod:`mmcl.dmvae.networks`: the ConvNet
image encoder with the global max pool, the ConvNet text encoder, the transposed-convolution
image decoder, the GRU text decoder with teacher forcing), the data module is the DMVAE's, and
the module exposes what ``mmcl dmvae eval`` / ``generate`` call on a stage-2 model, so every
model is evaluated by the same code (coherence, probing of z and w_i, fresh-critic MI, test ELBO).

**Why not the ``multivae`` package.** multivae 1.0.3 installs beside our pins and its MVAE, MMVAE,
MoPoE and MMVAE+ accept our encoders; but its decoders receive only z (``decoder(z)``), so our
autoregressive text decoder, which needs the target tokens for teacher forcing, fits only
through state set on the decoder before each call, repeated to match the K x B draws of the
mixture models; the losses come back summed over the batch for MMVAE/MMVAE+ and averaged for the
others; MVAE's KL weight is 0 unless the trainer passes ``epoch``; and MoPoE reads the device from
the first modality, which breaks when that modality is a dict of tokens. The four objectives are
a few lines each on our PoE (:func:`~mmcl.dmvae.losses.poe`), tested against hand-computed
values, and they keep our seeding and resume (:class:`~mmcl.optim.ResumableRNG`). Their
references: multivae ``models/mvae/mvae_model.py``, ``mmvae/mmvae_model.py``,
``mopoe/mopoe_model.py``, ``mmvaePlus/mmvaePlus_model.py``.

**Departures**, all with K = 1 draw: MMVAE and MMVAE+ are trained in the papers with importance-
weighted (IWAE) or DReG bounds with K > 1 and Laplace posteriors; here Gaussian posteriors and the
K = 1 stratified ELBO (the bounds coincide at K = 1 in expectation, not in variance). MMVAE+'s
auxiliary prior r(w) is N(0, I) here (the paper learns its scale). MoPoE draws one subset per
example (unbiased for the average over subsets the paper sums exactly).

**Impartial optimisation** (``impartial: pcgrad | imtl_g``; seed 001, Javaloy et al. 2022): the
gradient of each modality's share of the objective on the shared sub-graph (the encoders of z,
through which both modalities' terms flow) is computed separately and combined by PCGrad or
IMTL-G; every other parameter gets the plain sum. The cosine between the two modalities' shared
gradients is logged (``baseline/grad_cos``) every ``conflict_every`` steps with or without it.

**Test ELBO per modality** (``vae_terms``, read by the evaluation as for the DMVAE): with z drawn
from the joint posterior, ``log p(x_m | z, w_m) - KL(q(w_m | x_m) || p(w_m))`` (no w: the KL is 0),
the same conditional ELBO the DMVAE's stage 2 reports given c.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Literal

import lightning.pytorch as pl
import torch
from torch import nn

from mmcl.dmvae.data import MODALITIES
from mmcl.dmvae.losses import (
    IMAGE_LIKELIHOODS,
    gradient_cosine,
    imtl_g,
    kl_standard_normal,
    mmvae_objective,
    mopoe_objective,
    mvae_objective,
    pcgrad,
    poe,
    sample_gaussian,
    sample_subsets,
)
from mmcl.dmvae.networks import (
    AutoregressiveTextDecoder,
    ImageBackbone,
    ImageDecoder,
    gaussian_image_encoder,
    gaussian_text_encoder,
)
from mmcl.dmvae.stage2 import data_log_likelihood, generate_data
from mmcl.encoders import Posterior, check_encoding_size
from mmcl.optim import ResumableRNG, check_schedule, scheduled
from mmcl.tokenizer import BOS, EOS, PAD

OBJECTIVES = ("mvae", "mmvae", "mopoe", "mmvae_plus")
IMPARTIAL = ("none", "pcgrad", "imtl_g")
Objective = Literal["mvae", "mmvae", "mopoe", "mmvae_plus"]


class JointPosterior(nn.Module):
    """The shared-latent encoders q(z | x_i) and how a model aggregates them: what the
    evaluation calls ``content_model`` (``experts``, ``content``, ``aggregate``, ``hparams``)."""

    def __init__(
        self, image_encoder: nn.Module, text_encoder: nn.Module, aggregation: str, prior_expert: bool
    ):
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.aggregation = aggregation  # "poe" (MVAE, MoPoE) or "moe" (MMVAE, MMVAE+)
        self.hparams = SimpleNamespace(prior_expert=prior_expert)

    def expert(self, modality: str, x: torch.Tensor) -> Posterior:
        return self.image_encoder(x) if modality == "image" else self.text_encoder(x)

    def experts(self, image: torch.Tensor, text: torch.Tensor) -> Posterior:
        pi, pt = self.image_encoder(image), self.text_encoder(text)
        return Posterior(torch.stack([pi.mean, pt.mean], 1), torch.stack([pi.logvar, pt.logvar], 1))

    def aggregate(self, experts: Posterior) -> Posterior:
        """The joint posterior of the modalities stacked in ``experts``: their product, or the
        mixture's mean and (moment-matched) variance."""
        if self.aggregation == "poe":
            return poe(experts.mean, experts.logvar, prior_expert=self.hparams.prior_expert)
        mean = experts.mean.mean(1)
        second = (experts.logvar.exp() + experts.mean.pow(2)).mean(1)
        return Posterior(mean, (second - mean.pow(2)).clamp_min(1e-12).log())

    def content(self, image: torch.Tensor | None = None, text: torch.Tensor | None = None) -> Posterior:
        given = [(m, x) for m, x in zip(MODALITIES, (image, text)) if x is not None]
        if not given:
            raise ValueError("content() needs at least one modality")
        posts = [self.expert(m, x) for m, x in given]
        stacked = Posterior(
            torch.stack([p.mean for p in posts], 1), torch.stack([p.logvar for p in posts], 1)
        )
        return self.aggregate(stacked)


class BaselineModule(ResumableRNG, pl.LightningModule):
    """A joint multimodal VAE (see the module docstring) with the DMVAE's networks.

    Args:
        objective: 'mvae' | 'mmvae' | 'mopoe' | 'mmvae_plus'.
        vocabulary, max_text_length, image_resolution: the dataset's (linked by ``mmcl dmvae fit``).
        encoding_size: dimension of the shared latent z.
        specific_size: dimension of each w_i (MMVAE+ only; must be 0 for the others).
        prior_expert: MVAE's N(0, I) expert in every product (on in Wu & Goodman; ignored by the
            mixture models, off in MoPoE as in its paper).
        image_likelihood, image_scale: the image likelihood on pixel intensities in [0, 1].
        image_backbone, image_hidden_size, image_base_channels, image_global_max_pool: the image
            encoders (the DMVAE stage 1's ConvNet with the global max pool by default).
        text_embedding_dim, text_fbase: the ConvNet text encoders.
        decoder_base_channels, text_decoder_hidden, text_decoder_embedding_dim: the decoders.
        impartial: 'none' | 'pcgrad' | 'imtl_g' (see the module docstring).
        conflict_every: log the two modalities' gradient cosine every this many steps.
        lr, weight_decay, lr_schedule, warmup_steps, grad_clip: Adam and its schedule.
    """

    def __init__(
        self,
        objective: Objective = "mopoe",
        vocabulary: list[str] | None = None,
        max_text_length: int = 35,
        image_resolution: int = 64,
        encoding_size: int = 16,
        specific_size: int = 0,
        prior_expert: bool = True,
        image_likelihood: Literal["laplace", "gaussian"] = "laplace",
        image_scale: float = 0.1,
        image_backbone: ImageBackbone = "convnet",
        image_hidden_size: int = 128,
        image_base_channels: int = 16,
        image_global_max_pool: bool = True,
        text_embedding_dim: int = 64,
        text_fbase: int = 16,
        decoder_base_channels: int = 8,
        text_decoder_hidden: int = 256,
        text_decoder_embedding_dim: int = 64,
        impartial: Literal["none", "pcgrad", "imtl_g"] = "none",
        conflict_every: int = 25,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        warmup_steps: int = 0,
        grad_clip: float = 0.0,
    ):
        super().__init__()
        where = "baseline.model"
        if objective not in OBJECTIVES:
            raise ValueError(f"{where}.objective must be one of {OBJECTIVES}, got {objective!r}")
        if vocabulary is None or len(vocabulary) < 4:
            raise ValueError(f"{where}.vocabulary is required (linked from the dataset manifest)")
        check_encoding_size(encoding_size)
        if objective == "mmvae_plus":
            check_encoding_size(specific_size)
        elif specific_size != 0:
            raise ValueError(f"{where}.specific_size must be 0 for {objective} (only mmvae_plus has w_i)")
        if image_likelihood not in IMAGE_LIKELIHOODS:
            raise ValueError(f"{where}.image_likelihood must be laplace|gaussian, got {image_likelihood!r}")
        if not image_scale > 0:
            raise ValueError(f"{where}.image_scale must be > 0, got {image_scale}")
        if impartial not in IMPARTIAL:
            raise ValueError(f"{where}.impartial must be one of {IMPARTIAL}, got {impartial!r}")
        if not isinstance(conflict_every, int) or conflict_every < 1:
            raise ValueError(f"{where}.conflict_every must be an integer >= 1, got {conflict_every!r}")
        if grad_clip < 0:
            raise ValueError(f"{where}.grad_clip must be >= 0, got {grad_clip}")
        check_schedule(lr, lr_schedule, warmup_steps, where)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.modalities = list(MODALITIES)
        self.specific_sizes = {m: specific_size for m in self.modalities}
        self.deltas: dict[str, float] = {}  # no MI penalty (the evaluation reports it)
        self.content_model = JointPosterior(
            gaussian_image_encoder(
                encoding_size,
                image_resolution,
                image_backbone,
                image_hidden_size,
                image_base_channels,
                image_global_max_pool,
            ),
            gaussian_text_encoder(
                encoding_size, len(vocabulary), max_text_length, "convnet", text_embedding_dim, text_fbase
            ),
            "moe" if objective in ("mmvae", "mmvae_plus") else "poe",
            prior_expert and objective == "mvae",
        )
        self.specific_encoders = nn.ModuleDict()
        if specific_size:
            self.specific_encoders["image"] = gaussian_image_encoder(
                specific_size, image_resolution, image_backbone, image_hidden_size, image_base_channels
            )
            self.specific_encoders["text"] = gaussian_text_encoder(
                specific_size, len(vocabulary), max_text_length, "convnet", text_embedding_dim, text_fbase
            )
        latent = encoding_size + specific_size
        vocab = list(vocabulary)
        self.decoders = nn.ModuleDict(
            {
                "image": ImageDecoder(latent, image_resolution, decoder_base_channels),
                "text": AutoregressiveTextDecoder(
                    latent,
                    len(vocab),
                    max_text_length,
                    text_decoder_hidden,
                    text_decoder_embedding_dim,
                    bos_id=vocab.index(BOS),
                    eos_id=vocab.index(EOS),
                    pad_id=vocab.index(PAD),
                ),
            }
        )
        self.register_buffer("image_log_scale", torch.tensor(math.log(image_scale)), persistent=False)

    # ------------------------------------------------------------------ what the evaluation calls
    @property
    def content_size(self) -> int:
        return int(self.hparams.encoding_size)

    def inputs(self, modality: str, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder input, likelihood target) of one modality."""
        if modality == "image":
            return batch["image"], batch["image01"]
        return batch["text"], batch["text"]

    def encode_specific(self, modality: str, x: torch.Tensor) -> Posterior:
        """q(w_m | x_m); an empty ``(B, 0)`` posterior for models without w."""
        if modality in self.specific_encoders:
            return self.specific_encoders[modality](x)
        empty = x.new_zeros((x.shape[0], 0), dtype=torch.float32)
        return Posterior(empty, empty)

    @torch.no_grad()
    def content(
        self, batch: dict, generator: torch.Generator | None = None, use_cache: bool = False
    ) -> torch.Tensor:
        """One draw of z from the joint posterior (a mixture model draws a component per example)."""
        cm = self.content_model
        experts = cm.experts(batch["image"], batch["text"])
        if cm.aggregation == "poe":
            return sample_gaussian(cm.aggregate(experts), generator)
        pick = torch.randint(experts.mean.shape[1], (experts.mean.shape[0],), generator=generator)
        rows = torch.arange(experts.mean.shape[0])
        return sample_gaussian(Posterior(experts.mean[rows, pick], experts.logvar[rows, pick]), generator)

    def decode(self, modality: str, latent: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if modality == "text":
            return self.decoders["text"](latent, target)
        return self.decoders["image"](latent)

    @torch.no_grad()
    def generate(
        self,
        modality: str,
        content: torch.Tensor,
        specific: torch.Tensor,
        greedy: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Images in [0, 1] or token ids (greedy for coherence, sampled for grids)."""
        latent = torch.cat([content, specific.to(content.dtype)], dim=-1)
        return generate_data(self.decoders[modality], modality, latent, greedy, generator)

    def log_likelihood(self, modality: str, target: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return data_log_likelihood(
            self.decoders[modality],
            modality,
            target,
            output,
            self.hparams.image_likelihood,
            self.image_log_scale.exp(),
        )

    def vae_terms(
        self, modality: str, batch: dict, content: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """The conditional ELBO of one modality given z (module docstring), MI 0 (no penalty)."""
        x, target = self.inputs(modality, batch)
        q_w = self.encode_specific(modality, x)
        w = sample_gaussian(q_w, generator)
        log_lik = self.log_likelihood(
            modality, target, self.decode(modality, torch.cat([content, w], -1), target)
        )
        kl = kl_standard_normal(q_w)
        zero = log_lik.new_zeros(())
        return {
            "log_likelihood": log_lik,
            "kl": kl,
            "elbo": log_lik - kl,
            "mi": zero,
            "penalty": zero,
            "specific": w,
        }

    # ------------------------------------------------------------------ objective
    def shares(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Each modality's share of the per-example objective (``sum_m`` of them is the ELBO)."""
        experts = self.content_model.experts(batch["image"], batch["text"])
        targets = {m: self.inputs(m, batch)[1] for m in self.modalities}

        def sample(post: Posterior) -> torch.Tensor:
            return sample_gaussian(post, generator)

        def loglik(m: str, z: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
            latent = z if w is None else torch.cat([z, w], -1)
            return self.log_likelihood(m, targets[m], self.decode(m, latent, targets[m]))

        objective = self.hparams.objective
        if objective == "mvae":
            return mvae_objective(
                experts, self.modalities, loglik, sample, self.content_model.hparams.prior_expert
            )
        if objective == "mopoe":
            mask = sample_subsets(experts.mean.shape[0], len(self.modalities), generator, experts.mean.device)
            return mopoe_objective(experts, self.modalities, loglik, sample, mask)
        specific = None
        if objective == "mmvae_plus":
            specific = {m: self.encode_specific(m, self.inputs(m, batch)[0]) for m in self.modalities}
        return mmvae_objective(experts, self.modalities, loglik, sample, specific)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The impartiality block: the encoders of z, which both modalities' terms reach."""
        return [p for p in self.content_model.parameters() if p.requires_grad]

    def _per_modality_grads(
        self, losses: dict[str, torch.Tensor], params: list[nn.Parameter]
    ) -> list[torch.Tensor]:
        out = []
        for m in self.modalities:
            grads = torch.autograd.grad(losses[m], params, retain_graph=True, allow_unused=True)
            out.append(
                torch.cat(
                    [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)]
                )
            )
        return out

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt = self.optimizers()
        shares = self.shares(batch)
        n = batch["image"].shape[0]
        losses = {m: -s.mean() for m, s in shares.items()}
        total = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        impartial = self.hparams.impartial
        measure = impartial != "none" or self.global_step % self.hparams.conflict_every == 0
        if measure:
            params = self.shared_parameters()
            grads = self._per_modality_grads(losses, params)
            self.log("baseline/grad_cos", gradient_cosine(*grads), on_step=True, batch_size=n)
            for m, g in zip(self.modalities, grads):
                self.log(f"baseline/{m}/grad_norm", g.norm().detach(), on_step=True, batch_size=n)
        self.manual_backward(total)
        if impartial != "none":
            combined = pcgrad(grads) if impartial == "pcgrad" else imtl_g(grads)
            offset = 0
            for p in params:
                p.grad = combined[offset : offset + p.numel()].view_as(p).to(p.dtype)
                offset += p.numel()
        if self.hparams.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        self.lr_schedulers().step()
        for m, s in shares.items():
            self.log(f"baseline/{m}/objective", s.mean().detach(), on_step=True, batch_size=n, prog_bar=True)
        self.log("baseline/train_loss", total.detach(), on_step=True, batch_size=n)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        generator = torch.Generator().manual_seed(batch_idx)
        shares = self.shares(batch, generator)
        n = batch["image"].shape[0]
        for m, s in shares.items():
            self.log(f"baseline/val_{m}_objective", s.mean(), on_epoch=True, batch_size=n, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.save_rng(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.load_rng(checkpoint)

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        return scheduled(opt, self, "baseline.trainer")
