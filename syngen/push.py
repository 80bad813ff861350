"""Push an exported dataset folder to the Hugging Face Hub.

The token comes from the argument, else from huggingface_hub's usual places (``HF_TOKEN``, `hf auth login`);
it is never read, written or echoed here. Every failure becomes a :class:`PushError` whose message says what
went wrong and what to do, without the token.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from huggingface_hub import HfApi

from syngen.errors import PushError
from syngen.export.card import set_repo_id
from syngen.hub import push_failure
from syngen.owned import MARKER

__all__ = ["PushError", "push_dataset"]


def push_dataset(
    dataset_dir: Path, repo_id: str, *, private: bool = False, revision: str | None = None, token: str | None = None
) -> str:
    """Uploads ``dataset_dir`` (as `syngen export` wrote it) to the dataset repo ``repo_id`` and returns its URL.

    Creates the repo if needed (``private`` applies only to a new repo) and the branch ``revision`` if given
    (from the default branch), then uploads the folder with ``upload_folder``, which with hf_xet commits large
    folders in several commits and resumes an interrupted upload when run again. The card's loading code is
    pointed at ``repo_id`` first; on failure the card is put back as it was, so the folder is unchanged.
    """
    dataset_dir = Path(dataset_dir)
    if not repo_id or not repo_id.strip():
        raise PushError("No repo id: pass one like `user/dataset-name` (--repo-id).")
    if not (dataset_dir / "README.md").is_file():
        raise PushError(f"No exported dataset at {dataset_dir} (no README.md): run `syngen export` first.")
    api = HfApi(token=token)
    card = dataset_dir / "README.md"
    text = card.read_text(encoding="utf-8")
    named = set_repo_id(text, repo_id)
    renamed = False
    try:
        url = str(api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True))
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        if named != text:
            card.write_text(named, encoding="utf-8")
            renamed = True
        api.upload_folder(
            repo_id=repo_id,
            folder_path=dataset_dir,
            repo_type="dataset",
            revision=revision,
            ignore_patterns=[MARKER],  # syngen's own ownership marker, not part of the dataset
            commit_message=f"Upload {dataset_dir.parent.name} with syngen",
        )
    except Exception as error:
        if renamed:
            card.write_text(text, encoding="utf-8")
        raise PushError(push_failure(error, repo_id, "dataset", token)) from None  # the cause may carry request headers
    return f"{url}/tree/{quote(revision, safe='')}" if revision else url
