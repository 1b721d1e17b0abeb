"""Just enough of `transformers` for llama.cpp's convert_hf_to_gguf.py to run
in the benchmark (Debian 12 has no python3-transformers): AutoConfig reads
config.json. Used only by bench/convert_bench.sh, never by Tessera."""
import json
import os


class _Config(dict):
    def to_dict(self):
        return dict(self)


class AutoConfig:
    @staticmethod
    def from_pretrained(path, **kwargs):
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            return _Config(json.load(f))
