"""Push: what is sent to the Hub (HfApi replaced at the boundary), and failures that are clear, fast and token-free."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx2
import pytest
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError

from syngen.push import PushError, push_dataset

TOKEN = "hf_" + "Zq9" * 12


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` with its content hash and modification time."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "demo" / "dataset"
    (folder / "data" / "grounding").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: other\n---\n# demo\n")
    (folder / "data" / "grounding" / "train-00000.parquet").write_bytes(b"PAR1 not really")
    return folder


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """HfApi's create_repo, create_branch and upload_folder replaced by recorders (with the api's token)."""
    recorded: list[tuple[str, dict[str, Any]]] = []

    def create_repo(self: HfApi, repo_id: str, **kwargs: Any) -> str:
        recorded.append(("create_repo", {"repo_id": repo_id, "token": self.token, **kwargs}))
        return f"https://huggingface.co/datasets/{repo_id}"

    def create_branch(self: HfApi, repo_id: str, **kwargs: Any) -> None:
        recorded.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self: HfApi, **kwargs: Any) -> None:
        recorded.append(("upload_folder", kwargs))

    for fake in (create_repo, create_branch, upload_folder):
        monkeypatch.setattr(HfApi, fake.__name__, fake)
    return recorded


@pytest.mark.parametrize(
    ("private", "revision", "url"),
    [
        (False, None, "https://huggingface.co/datasets/me/demo"),
        (True, None, "https://huggingface.co/datasets/me/demo"),
        (False, "v1/ablation", "https://huggingface.co/datasets/me/demo/tree/v1%2Fablation"),
    ],
    ids=["public-main", "private", "branch"],
)
def test_sends_repo_folder_privacy_and_revision(
    dataset_dir: Path, calls: list, private: bool, revision: str | None, url: str
) -> None:
    before = snapshot(dataset_dir)
    assert push_dataset(dataset_dir, "me/demo", private=private, revision=revision, token=TOKEN) == url
    names = [name for name, _ in calls]
    assert names == ["create_repo", "create_branch", "upload_folder"] if revision else ["create_repo", "upload_folder"]
    create = calls[0][1]
    assert (create["repo_id"], create["repo_type"], create["private"], create["exist_ok"]) == (
        "me/demo",
        "dataset",
        private,
        True,
    )
    assert create["token"] == TOKEN
    if revision:
        branch = calls[1][1]
        assert (branch["repo_id"], branch["branch"], branch["repo_type"], branch["exist_ok"]) == (
            "me/demo",
            revision,
            "dataset",
            True,
        )
    upload = calls[-1][1]
    assert (upload["repo_id"], Path(upload["folder_path"]), upload["repo_type"], upload["revision"]) == (
        "me/demo",
        dataset_dir,
        "dataset",
        revision,
    )
    assert snapshot(dataset_dir) == before


def test_offline_fails_and_leaves_the_folder(dataset_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = snapshot(dataset_dir)
    with pytest.raises(PushError) as error:
        push_dataset(dataset_dir, "me/demo", token=TOKEN)
    assert "HF_HUB_OFFLINE" in str(error.value) and "me/demo" in str(error.value)
    assert TOKEN not in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert snapshot(dataset_dir) == before


def http_error(status: int) -> HfHubHTTPError:
    """An HTTP error whose text echoes the token, as a careless server or proxy might."""
    request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
    response = httpx2.Response(status, request=request)
    return HfHubHTTPError(f"{status} Client Error (Authorization: Bearer {TOKEN})", response=response)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (http_error(401), "refused the credentials (401)"),
        (http_error(403), "refused the credentials (403)"),
        (http_error(500), "Check the network"),
        (httpx2.ConnectError(f"no route to host for {TOKEN}"), "ConnectError"),
    ],
    ids=["bad-token", "forbidden", "server-error", "no-network"],
)
def test_hub_errors_become_token_free_push_errors(
    dataset_dir: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, expected: str
) -> None:
    def create_repo(self: HfApi, repo_id: str, **kwargs: Any) -> str:
        raise error

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    with pytest.raises(PushError, match="The local dataset was not changed") as raised:
        push_dataset(dataset_dir, "me/demo", token=TOKEN)
    assert expected in str(raised.value)
    assert TOKEN not in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("repo_id", "folder", "expected"),
    [("", "dataset", "No repo id"), ("   ", "dataset", "No repo id"), ("me/demo", "missing", "run `syngen export`")],
    ids=["empty-repo-id", "blank-repo-id", "missing-folder"],
)
def test_bad_arguments_fail_before_any_request(
    dataset_dir: Path, calls: list, repo_id: str, folder: str, expected: str
) -> None:
    with pytest.raises(PushError, match=expected):
        push_dataset(dataset_dir.parent / folder, repo_id, token=TOKEN)
    assert calls == []


def test_card_names_the_repo_pushed_to(dataset_dir: Path, calls: list) -> None:
    card = dataset_dir / "README.md"
    card.write_text(
        '---\nlicense: other\n---\n```python\ng = load_dataset("<user>/demo", "grounding")\n'
        '# pairs = load_preference("<user>/demo")\n```\n'
    )
    push_dataset(dataset_dir, "me/demo")
    assert 'load_dataset("me/demo", "grounding")' in card.read_text()
    assert 'load_preference("me/demo")' in card.read_text()  # the join's line too
    push_dataset(dataset_dir, "org/other")  # a card that already names a repo is pointed at the new one
    assert 'load_dataset("org/other", "grounding")' in card.read_text() and "me/demo" not in card.read_text()


def test_failed_push_leaves_the_card_as_it_was(dataset_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = dataset_dir / "README.md"
    card.write_text('---\nlicense: other\n---\n```python\ng = load_dataset("<user>/demo", "grounding")\n```\n')
    before = snapshot(dataset_dir)
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: f"https://hf.co/datasets/{repo_id}")

    def upload_folder(self: HfApi, **kwargs: Any) -> None:
        assert 'load_dataset("me/demo"' in card.read_text()  # the uploaded card names the repo
        raise RuntimeError("connection reset")

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    with pytest.raises(PushError, match="connection reset"):
        push_dataset(dataset_dir, "me/demo")
    assert {k: v[0] for k, v in snapshot(dataset_dir).items()} == {k: v[0] for k, v in before.items()}
