"""`python -m train.finetune NAME --data fashion-mnist|PATH --epochs N`: fine-tune a zoo model end to end.

timm's usual practice: the whole network with a new classifier, AdamW (or SGD with momentum), a
linear warm-up then a cosine decay of the lr, per step, and optionally layer-wise lr decay (each
block's lr scaled by ``layer_decay`` per block from the top, as BEiT and MAE fine-tune ViTs). Images go
through timm's training transform for the model's own resolution (random resized crop, flip, colour
jitter) and its evaluation transform for the test split. The fine-tuned model, classifier included,
is saved in the zoo format with a card and its test top-1, and loads with ``zoo.load`` and timm.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from timm.optim import create_optimizer_v2
import torch
from timm.data import create_transform, resolve_data_config
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

import zoo
import zoo.card
import zoo.checkpoint

from .eval import RESULTS, record
from .eval_data import EvalDataError, splits, transformed, workers
from .schedules import cosine


def data_config(model) -> dict:
    config = resolve_data_config(model=model)
    return {k: config[k] for k in ("input_size", "mean", "std", "crop_pct", "interpolation")}


@torch.no_grad()
def top1(model, loader, device) -> float:
    model.eval()
    right = total = 0
    for images, labels in loader:
        right += (model(images.to(device)).argmax(dim=1).cpu() == labels).sum().item()
        total += len(labels)
    return 100 * right / max(1, total)


def finetune(name: str, data: str = "fashion-mnist", epochs: int = 1, lr: float = 5e-4, optimizer: str = "adamw",
             weight_decay: float = 0.05, layer_decay: float | None = None, batch_size: int = 64,
             warmup_epochs: float = 0.5, out: Path | None = None, max_steps: int = 0, val_fraction: float = 0.2,
             seed: int = 0, device: torch.device | None = None) -> dict:
    """Fine-tune ``name`` on ``data``; returns the result (top-1 on the test split, the losses, the saved folder).
    ``max_steps`` > 0 stops each epoch early (tests, quick looks)."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    began = time.time()
    split = splits(data, val_fraction, seed)
    torch.manual_seed(seed)
    source = zoo.resolve(name)
    model = zoo.checkpoint.load(source, num_classes=len(split.classes)).to(device)
    config = data_config(model)
    train = DataLoader(transformed(split.train, create_transform(**config, is_training=True)), batch_size=batch_size,
                       shuffle=True, drop_last=True, num_workers=workers())
    test = DataLoader(transformed(split.test, create_transform(**config)), batch_size=128, num_workers=workers())
    if len(train) == 0:
        raise EvalDataError(f"{len(split.train)} training images cannot fill one batch of {batch_size}: lower "
                            "--batch-size or add images")
    steps = min(len(train), max_steps) if max_steps else len(train)
    opt = create_optimizer_v2(model, opt=optimizer, lr=lr, weight_decay=weight_decay,
                                         layer_decay=layer_decay, momentum=0.9)
    plan = cosine(lr, 0.0, epochs * steps, round(warmup_epochs * steps))
    losses, step = [], 0
    for epoch in range(epochs):
        model.train()
        for images, labels in tqdm(train, desc=f"fine-tune epoch {epoch + 1}/{epochs}", total=steps, leave=False):
            for group in opt.param_groups:
                group["lr"] = float(plan[step]) * group.get("lr_scale", 1.0)
            loss = F.cross_entropy(model(images.to(device)), labels.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            if step == (epoch + 1) * steps:
                break
    accuracy = top1(model, test, device)
    out = Path(out) if out else zoo.zoo_home() / f"{Path(str(name)).name}-finetuned-{Path(data).name}"
    recipe = dict(source=str(name), data=split.spec, epochs=epochs, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                  layer_decay=layer_decay, batch_size=batch_size, warmup_epochs=warmup_epochs,
                  resolution=config["input_size"][-1])
    card = card_text(name, out.name, timm_name(model), data, len(split.classes), accuracy, recipe)
    model.cpu().eval()
    folder = zoo.checkpoint.save(model, out, data_config=config, card=card, label_names=split.classes,
                                 model_args=zoo.checkpoint.read_config(source).get("model_args"))
    result = dict(protocol="finetune", model=str(name), data=split.spec, top1=round(accuracy, 2),
                  resolution=config["input_size"][-1], epochs=epochs, steps=step, first_loss=losses[0],
                  last_loss=losses[-1], seconds=round(time.time() - began, 1), saved_to=str(folder))
    record(folder / RESULTS, f"finetune:{data}", result)
    return result


def card_text(name, out_name: str, arch: str, data: str, classes: int, accuracy: float, recipe: dict) -> str:
    """The fine-tuned model's card: its source's method and paper when the registry knows it."""
    entry = zoo.ENTRIES.get(str(name))
    description = (f"`{name}` fine-tuned end to end on {data} ({classes} classes) with `python -m train.finetune`; "
                   "the classifier is included.")
    if entry is None:
        return f"# {out_name}\n\n{description}\n\nTest top-1: {accuracy:.2f}%.\n"
    return zoo.card.render(out_name, entry.method, arch, data, description,
                           {f"fine-tuned top-1 ({data} test split)": accuracy}, recipe)


def timm_name(model) -> str:
    return model.pretrained_cfg.get("architecture", type(model).__name__)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="a zoo name (python -m zoo list) or a checkpoint folder")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--layer-decay", type=float, help="per-block lr decay from the top, e.g. 0.65 for ViTs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup-epochs", type=float, default=0.5)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--out", type=Path, help="where the fine-tuned model goes (default: $ZOO_HOME/NAME-finetuned-DATA)")
    args = parser.parse_args(argv)
    try:
        result = finetune(args.name, args.data, args.epochs, args.lr, args.optimizer, args.weight_decay,
                          args.layer_decay, args.batch_size, args.warmup_epochs, args.out, val_fraction=args.val_fraction)
    except (zoo.ZooError, EvalDataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"fine-tuned top-1 {result['top1']:.2f}% at {result['resolution']} px -> {result['saved_to']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
