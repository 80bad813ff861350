"""Run by tests/train/test_ddp.py under `accelerate launch` (two CPU processes): sft on a dataset, recording
which examples each rank trained on and the weights each rank ends with; a checkpoint at step 2.

Usage: ddp_worker.py DATA OUT [resume]   (resume: continue from OUT's newest checkpoint)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from safetensors.torch import save_file

from syngen.train.config import SftConfig
from syngen.train.loop import train
from syngen.train.sft import SftObjective


class Recording(SftObjective):
    """sft whose items carry their dataset index; ``seen`` lists each optimizer step's indices on this rank."""

    seen: list[list[int]] = []

    def dataset(self):
        regions = super().dataset()

        class Indexed(torch.utils.data.Dataset):
            def __len__(self) -> int:
                return len(regions)

            def __getitem__(self, i: int) -> dict:
                return {**regions[i], "index": i}

        return Indexed()

    def loss(self, model, batch):
        self.seen.append(batch["index"].tolist())
        return super().loss(model, batch)


def main(data: str, out: str, resume: str = "") -> None:
    torch.set_num_threads(1)
    state = PartialState(cpu=True)  # the first state: with cpu=True the two processes form one gloo group
    config = SftConfig(
        dataset_name=data, output_dir=out, sam_model_name_or_path="tiny:segmenter",
        text_encoder_name_or_path="tiny:text-encoder", prompter_heads=2, per_device_train_batch_size=2, max_steps=4,
        learning_rate=1e-2, save_steps=2, use_cpu=True, resume_from_checkpoint="true" if resume == "resume" else None,
    )  # fmt: skip
    objective = Recording(config)
    train(objective)
    rank = state.process_index
    weights = {k: v.detach().clone() for k, v in objective.policy.state_dict().items()}
    save_file(weights, str(Path(out) / f"rank{rank}.safetensors"))
    record = {"world": state.num_processes, "seen": objective.seen}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:4])
