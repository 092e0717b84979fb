"""Publishing uploads the checkpoint folder as it is, and the committed cards stay in sync."""
from pathlib import Path

from zoo import card
from zoo.publish import publish
from zoo.registry import ENTRIES
from conftest import save_backbone

ROOT = Path(__file__).resolve().parents[1]


class FakeHub:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, private, exist_ok):
        self.calls.append(("create", repo_id, private))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, commit_message):
        self.calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))


def test_publish_uploads_config_weights_and_card(zoo_home):
    save_backbone(zoo_home / "instdisc-resnet18-fmnist")
    hub = FakeHub()
    url = publish("instdisc-resnet18-fmnist", api=hub)
    assert url == "https://huggingface.co/contrastive-zoo/instdisc-resnet18-fmnist"
    assert hub.calls[1] == ("upload", "contrastive-zoo/instdisc-resnet18-fmnist",
                            ["README.md", "config.json", "model.safetensors"])


def test_committed_cards_of_converted_models_match_the_registry():
    for entry in ENTRIES.values():
        if entry.source == "authors":
            expected = card.for_entry(entry)
            assert (ROOT / "model_cards" / f"{entry.name}.md").read_text() == expected, entry.name
