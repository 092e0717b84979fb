"""Model cards: the README.md of a checkpoint, with model-index metadata for the Hub."""
from __future__ import annotations

import re

from huggingface_hub import EvalResult, ModelCardData
from timm.models import model_entrypoint

from .registry import PAPERS, STAGE_NAMES, STAGES

KNN_METRIC = "kNN top-1 (k=200, T=0.07)"
LINEAR_METRIC = "linear-probe top-1 (reported)"
DATASET_NAMES = {"fashion-mnist": "Fashion-MNIST", "imagenet-1k": "ImageNet-1k"}
METHOD_NAMES = {"instdisc": "InstDisc", "invaspread": "InvaSpread", "cpc": "CPC", "cmc": "CMC", "moco": "MoCo v1",
                "mocov2": "MoCo v2", "simclr": "SimCLR v1", "simclrv2": "SimCLR v2", "swav": "SwAV", "byol": "BYOL",
                "simsiam": "SimSiam", "mocov3": "MoCo v3", "dino": "DINO"}
# licence identifiers the Hub accepts in a card's `license` field (a common subset); others become "other"
HUB_LICENCES = {"apache-2.0", "mit", "bsd", "bsd-2-clause", "bsd-3-clause", "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0",
                "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "cc-by-nc-3.0", "gpl-3.0", "lgpl-3.0",
                "agpl-3.0", "mpl-2.0", "unlicense", "openrail", "unknown", "other"}


def render(name: str, method: str, arch: str, dataset: str, description: str,
           metrics: dict[str, float] | None = None, recipe: dict | None = None) -> str:
    """The card for ``name``: YAML metadata (model-index with ``metrics``, in %) and a body."""
    paper = PAPERS[method]
    metrics = metrics or {}
    data = ModelCardData(
        model_name=name, library_name="timm", pipeline_tag="image-feature-extraction",
        tags=["self-supervised", "contrastive", method, arch], datasets=[dataset],
        eval_results=[EvalResult(task_type="image-feature-extraction", task_name="kNN classification",
                                 dataset_type=dataset, dataset_name=DATASET_NAMES.get(dataset, dataset),
                                 dataset_split="test", metric_type="accuracy", metric_name=metric,
                                 metric_value=round(value, 2))
                      for metric, value in metrics.items()] or None,
    )
    lines = [f"---\n{data.to_yaml()}\n---", f"# {name}", "", description, "",
             f"Method: **{method}**, from [{paper.title}]({paper.url}) ({paper.authors}, {paper.year}).",
             f"Backbone: timm `{arch}`, no classifier (`num_classes=0`): it returns pooled features.", "",
             "## Use", "", "```python", "import zoo", f'model = zoo.load("{name}")  # timm model, eval mode',
             f'transform = zoo.transforms("{name}")  # PIL image -> normalised tensor',
             "features = model(transform(image).unsqueeze(0))", "", "# or with timm alone",
             "import timm", f'model = timm.create_model("hf-hub:contrastive-zoo/{name}", pretrained=True)', "```"]
    if metrics:
        lines += ["", "## Results", "", "| metric | value (%) |", "|---|---|"]
        lines += [f"| {metric} | {value:.2f} |" for metric, value in metrics.items()]
    if recipe:
        lines += ["", "## Training recipe", "", "| setting | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in recipe.items()]
    lines += ["", "## Citation", "", f"{paper.authors}. *{paper.title}*. {paper.year}. arXiv:{paper.arxiv}.", ""]
    return "\n".join(lines)


def hub_licence(licence: str) -> str:
    """The Hub's identifier of ``licence`` as the registry writes it ("CC-BY-NC-4.0" -> "cc-by-nc-4.0");
    "unknown" when none is recorded, "other" when the Hub has no identifier for it."""
    if not licence.strip():
        return "unknown"
    ident = re.sub(r"[\s_]+", "-", licence.strip().lower())
    return ident if ident in HUB_LICENCES else "other"


def percent(value: float) -> str:
    """54.0, 71.1, 71.15: the reported figure with the decimals it has (at least one)."""
    text = f"{value:.2f}"
    return text[:-1] if text.endswith("0") else text


def lineage(method: str) -> str:
    """E.g. "stage 1 of the lineage (many ideas)"."""
    stage = STAGES.get(method)
    return f"stage {stage} of the lineage ({STAGE_NAMES[stage]})" if stage else "outside the lineage"


def for_entry(entry) -> str:
    """The card of a registry entry converted from the authors' release: what the weights are, where the
    reported number comes from, the weights' licence, how the zoo converted and checked them, and how to use them."""
    paper, method = entry.paper, METHOD_NAMES.get(entry.method, entry.method)
    dataset = DATASET_NAMES.get(entry.dataset, entry.dataset)
    licence = hub_licence(entry.licence)
    results = None
    if entry.linear_top1 is not None:
        urls = re.findall(r"https?://\S+", entry.top1_source)
        results = [EvalResult(
            task_type="image-classification", task_name="Linear probe on frozen features",
            dataset_type="imagenet-1k", dataset_name="ImageNet-1k", dataset_split="validation",
            metric_type="accuracy", metric_name=LINEAR_METRIC, metric_value=entry.linear_top1, verified=False,
            source_name=entry.top1_source or f"{paper.title} ({paper.year})",
            source_url=urls[0].rstrip(").,") if urls else paper.url)]
    data = ModelCardData(
        model_name=entry.name, library_name="timm", pipeline_tag="image-feature-extraction", license=licence,
        license_name=entry.licence if licence == "other" else None,
        license_link=(entry.release if is_link(entry.release) else None) if licence == "other" else None,
        tags=["self-supervised", "contrastive", entry.method, entry.arch], datasets=[entry.dataset],
        eval_results=results)
    args = ", ".join(f"{key}={value!r}" for key, value in entry.model_args.items())
    architecture = f"timm `{entry.arch}`" + (f" with `model_args` `{args}`" if args else " (timm's default arguments)")
    home = model_entrypoint(entry.arch).__module__
    if home.startswith("zoo."):  # the zoo's own: timm builds it only once zoo has registered it
        architecture += f", an architecture `import zoo` registers with timm (`{home}`)"
    epochs = f"{entry.epochs} epochs" if entry.epochs else "epochs not recorded in the registry"
    if entry.linear_top1 is not None:
        top1 = (f"{percent(entry.linear_top1)}% ImageNet-1k linear-probe top-1, as reported in "
                f"{entry.top1_source or 'the paper'}; not re-measured by the zoo")
    else:
        top1 = "not recorded in the registry"
    weights_licence = (f"{entry.licence}, as the authors released the weights (card metadata: `{licence}`)"
                       if entry.licence else "not recorded in the registry: check the authors' release before use")
    digests = [f"SHA-256 `{entry.sha256}`"] if entry.sha256 else []
    digests += [f"MD5 prefix `{entry.md5}`, as the authors publish it"] if entry.md5 else []
    checksum = "; ".join(digests) or "no digest recorded yet"
    size = f", {entry.size} bytes" if entry.size else ""
    lines = [
        f"---\n{data.to_yaml()}\n---", f"# {entry.name}", "", entry.description, "",
        "| | |", "|---|---|",
        f"| Method | {method}: [{paper.title}]({paper.url}) ({paper.authors}, {paper.year}); {lineage(entry.method)} |",
        f"| Architecture | {architecture}; no classifier (`num_classes=0`): the model returns pooled features |",
        f"| Pre-training data | {dataset} training images without their labels; {epochs} |",
        f"| Reported linear top-1 | {top1} |",
        f"| Licence of the weights | {weights_licence} |",
        f"| Authors' release | {entry.release or 'not recorded'}; {checksum}{size} |",
        "", "## How it was converted and verified", "",
        (f"- `python -m zoo convert {entry.name}` downloads the release (resuming an interrupted download)"
         + (" and checks its digest" if entry.sha256 or entry.md5 else "") + ", or takes the file given with `--src`."
         if is_link(entry.release) else
         f"- `python -m zoo convert {entry.name} --src FILE` takes the authors' file (the registry records no "
         "direct download).")
        + " " + _reading(entry.method),
        f"- The authors' weights are mapped to timm's `{entry.arch}` names, and every key and shape is checked "
        "against the timm architecture before anything is written; any difference stops the conversion.",
        "- The zoo's tests write files in the authors' layout from a known network, convert them the same way, and "
        "check that the converted model gives that network's features.",
        "", "## Use", "", "```python", "import zoo",
        f'model = zoo.load("{entry.name}")  # timm model in eval mode, returns pooled features',
        f'transform = zoo.transforms("{entry.name}")  # PIL image -> normalised tensor',
        "features = model(transform(image).unsqueeze(0))", "",
        "# fine-tuning: the same backbone with a fresh classifier of N classes",
        f'model = zoo.load("{entry.name}", num_classes=N)', "", "# or with timm alone", "import timm",
        f'model = timm.create_model("hf-hub:{entry.hub_id}", pretrained=True)', "```",
        "", "## Citation", "", f"{paper.authors}. *{paper.title}*. {paper.year}. arXiv:{paper.arxiv}.", ""]
    return "\n".join(lines)


def _reading(method: str) -> str:
    """How ``zoo convert`` reads ``method``'s release, as a sentence for the card."""
    from . import layouts  # noqa: F401  (registers every release layout's converter)
    from .convert import CONVERTERS

    reader = CONVERTERS.get(method)
    if reader is not None and reader.load is not None:
        module = reader.load.__module__.replace(".", "/")
        return (f"The file is not a PyTorch one: the zoo's own reader (`{module}.py`) parses it as data, without "
                "the authors' framework, and no code from the file runs.")
    return ("It reads the file with PyTorch's weights-only unpickler, the authors' classes replaced by inert "
            "stand-ins, so no code from the file runs.")


def is_link(text: str) -> bool:
    return bool(re.fullmatch(r"https?://\S+", text or ""))
