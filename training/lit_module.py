"""LightningModule around `BetaNet`: weighted, masked Gaussian NLL on forward betas + regime CE.

loss = sum_i w_i * sum_k m_ik * [log sigma_ik + (y_ik - beta_ik)^2 / (2 sigma_ik^2)] / sum_i w_i sum_k m_ik
     + regime_loss_weight * sum_i w_i * CE_i / sum_i w_i       (over samples with a known regime)
where m_ik = 1 if the target is finite.  Validation uses unit weights so early stopping compares
epochs on the plain out-of-sample likelihood.

loss="mse" (the scored metric): the mean is trained on the masked weighted squared error alone,
and the scale head on the Gaussian NLL of the DETACHED residuals (so a wide sigma can never
excuse a bad mean); the monitored validation quantity is then the plain beta MSE only (no
regime term): the early-stopping epoch is chosen on what the scorecard measures.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule

from adaptive_beta.models.networks import BetaNet


def masked_gaussian_nll(
    y: torch.Tensor, beta: torch.Tensor, log_sigma: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted sum of per-element NLL, weighted count) over finite targets; y, beta, log_sigma [B, K], w [B]."""
    mask = torch.isfinite(y)
    y0 = torch.where(mask, y, beta.detach())
    nll = log_sigma + 0.5 * ((y0 - beta) * torch.exp(-log_sigma)) ** 2  # [B, K]
    wm = w.unsqueeze(1) * mask.to(nll.dtype)  # [B, K]
    return (nll * wm).sum(), wm.sum()


def weighted_regime_ce(
    logits: torch.Tensor, regime: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted sum of cross-entropy, weighted count) over samples with regime >= 0."""
    known = regime >= 0
    ce = F.cross_entropy(logits, regime.clamp(min=0), reduction="none")  # [B]
    wk = w * known.to(ce.dtype)
    return (ce * wk).sum(), wk.sum()


class BetaLitModule(LightningModule):
    """Trains a BetaNet; keeps per-epoch history and the best-validation weights in memory."""

    def __init__(
        self, net: BetaNet, lr: float, weight_decay: float, regime_loss_weight: float, loss: str = "nll"
    ):
        super().__init__()
        if loss not in ("nll", "mse"):
            raise ValueError(f"loss must be 'nll' or 'mse', got {loss!r}")
        self.net = net
        self.lr, self.weight_decay, self.regime_loss_weight = lr, weight_decay, regime_loss_weight
        self.loss = loss
        self._mse = {"train": [0.0, 0.0], "val": [0.0, 0.0]}
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.best_val = float("inf")
        self.best_epoch = -1
        self.last_val: dict[str, float] = {}  # the latest validation epoch's losses (for callbacks)
        self._sums = {"train": [0.0, 0.0, 0.0, 0.0], "val": [0.0, 0.0, 0.0, 0.0]}

    def forward(self, x):
        return self.net(x)

    def _step(self, batch, split: str) -> torch.Tensor:
        beta, log_sigma, logits = self.net.heads(batch["x"])
        w = batch["w"] if split == "train" else torch.ones_like(batch["w"])
        y = batch["y"]
        mask = torch.isfinite(y)
        err2 = torch.where(mask, y - beta, torch.zeros_like(beta)) ** 2  # [B, K]
        wm = w.unsqueeze(1) * mask.to(beta.dtype)
        mse_sum = (err2 * wm).sum()
        if self.loss == "mse":
            nll_sum, nll_n = masked_gaussian_nll(y, beta.detach(), log_sigma, w)  # scale only
        else:
            nll_sum, nll_n = masked_gaussian_nll(y, beta, log_sigma, w)
        ce_sum, ce_n = weighted_regime_ce(logits, batch["regime"], w)
        nll = nll_sum / nll_n.clamp(min=1e-8)
        ce = ce_sum / ce_n.clamp(min=1e-8)
        loss = nll + self.regime_loss_weight * ce
        if self.loss == "mse":
            loss = loss + mse_sum / nll_n.clamp(min=1e-8)
        m = self._mse[split]
        m[0] += float(mse_sum.detach())
        m[1] += float(nll_n)
        s = self._sums[split]
        s[0] += float(nll_sum.detach())
        s[1] += float(nll_n)
        s[2] += float(ce_sum.detach())
        s[3] += float(ce_n)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def _epoch_losses(self, split: str) -> dict[str, float]:
        s = self._sums[split]
        nll = s[0] / s[1] if s[1] > 0 else float("nan")
        ce = s[2] / s[3] if s[3] > 0 else 0.0
        self._sums[split] = [0.0, 0.0, 0.0, 0.0]
        m = self._mse[split]
        mse = m[0] / m[1] if m[1] > 0 else float("nan")
        self._mse[split] = [0.0, 0.0]
        total = mse if self.loss == "mse" else nll + self.regime_loss_weight * ce
        return {f"{split}_nll": nll, f"{split}_ce": ce, f"{split}_mse": mse, f"{split}_loss": total}

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._sums["val"] = [0.0, 0.0, 0.0, 0.0]
            self._mse["val"] = [0.0, 0.0]
            return
        val = self._epoch_losses("val")
        self.log("val_loss", val["val_loss"], prog_bar=True, logger=False)
        self._pending_val = val
        self.last_val = dict(val)

    def on_train_epoch_end(self) -> None:
        rec = {
            "epoch": int(self.current_epoch),
            **self._epoch_losses("train"),
            **getattr(self, "_pending_val", {}),
        }
        self._pending_val = {}
        self.history.append(rec)
        v = rec.get("val_loss", float("nan"))
        if v == v and v < self.best_val:  # NaN-safe
            self.best_val, self.best_epoch = v, int(self.current_epoch)
            self.best_state = copy.deepcopy(self.net.state_dict())

    def configure_optimizers(self):
        return torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
