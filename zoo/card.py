"""Model cards: the README.md of a checkpoint, with model-index metadata for the Hub."""
from __future__ import annotations

from huggingface_hub import EvalResult, ModelCardData

from .registry import PAPERS

KNN_METRIC = "kNN top-1 (k=200, T=0.07)"
DATASET_NAMES = {"fashion-mnist": "Fashion-MNIST", "imagenet-1k": "ImageNet-1k"}


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


def for_entry(entry) -> str:
    """The card of a registry entry converted from the authors' release."""
    return render(entry.name, entry.method, entry.arch, entry.dataset, entry.description, entry.metrics,
                  {"source": entry.release})
