"""Run a pipeline over a stream of lines (the engine of `openalbert run`): one input per line in, one JSON
document per line out, in order, a chunk of lines at a time so a large file never sits in memory."""

from __future__ import annotations

import codecs
import json
import os
import sys
from itertools import islice
from pathlib import Path
from typing import IO, Any

import torch

from openalbert.pipelines import pipeline, pipeline_class


def run_stream(
    task: str,
    model: str | os.PathLike | None = None,
    *,
    input_path: str | os.PathLike | None = None,
    output_path: str | os.PathLike | None = None,
    device: torch.device | str | int | None = None,
    dtype: torch.dtype | str | None = None,
    batch_size: int = 8,
    quantization: str | None = None,
    framework: str | None = None,
    cuda_graphs: bool = False,
    fallback_margin: float | None = None,
    skip_bad_lines: bool = False,
    chunk_lines: int | None = None,
    progress: bool | None = None,
    **params: Any,
) -> int:
    """Answer every line of `input_path` (stdin when None) into `output_path` (stdout when None).

    Text tasks read one text per line, a blank line being the empty text, so that output line n answers
    input line n; question-answering and multiple-choice read one JSON object per line and skip blank
    lines. A UTF-8 byte-order mark at the start is ignored. A line that cannot be processed raises
    ValueError naming its number, after the lines before it were written; with `skip_bad_lines` it gets
    `{"error": ..., "line": n}` instead and the rest go on. Progress goes to stderr when the input is a
    file or longer than one chunk. Returns the number of bad lines.
    """
    cls = pipeline_class(task)
    if input_path is not None and output_path is not None and _same_file(input_path, output_path):
        # the output is opened for writing (emptied) before the input is read: both would be lost
        raise ValueError(f"--output {output_path} is the input file; write the answers to another file")
    source = _open_input(input_path)
    try:
        pipe = pipeline(
            task,
            model=model,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            quantization=quantization,
            framework=framework,
            cuda_graphs=cuda_graphs,
            fallback_margin=fallback_margin,
        )
        try:
            checked = pipe._call_params(params)  # once for the whole stream, not per chunk
        except TypeError as e:
            raise ValueError(str(e)) from None
        if checked.get("return_tensors"):
            raise ValueError(
                "return_tensors=true gives torch tensors, which a JSON line cannot hold; openalbert run writes "
                "the values as lists, so leave the parameter out"
            )
        chunk_lines = chunk_lines or max(256, 4 * pipe.batch_size)
        with _Output(output_path) as sink:
            return _process(
                pipe, cls, source, sink, chunk_lines, skip_bad_lines, progress, input_path, checked, params
            )
    finally:
        if input_path is not None:
            source.close()


def _process(
    pipe: Any,
    cls: Any,
    source: IO[bytes],
    sink: IO[str],
    chunk_lines: int,
    skip_bad_lines: bool,
    progress: bool | None,
    input_path: str | os.PathLike | None,
    checked: dict[str, Any],
    params: dict[str, Any],
) -> int:
    from tqdm.auto import tqdm

    bar = None
    if input_path is not None and progress is not False:
        size = os.fstat(source.fileno()).st_size
        bar = tqdm(total=size, unit="B", unit_scale=True, desc=cls.task, file=sys.stderr, leave=False)
    bad, number = 0, 0
    lines = iter(source)
    try:
        while chunk := list(islice(lines, chunk_lines)):
            if bar is None and progress is not False and (progress or len(chunk) == chunk_lines):
                # stdin of more than one chunk: a long job, so show a line counter.
                bar = tqdm(unit="line", desc=cls.task, file=sys.stderr, leave=False, initial=number)
            numbers: list[int] = []  # the input line of each parsed item (blank JSON lines have none)
            parsed: list[Any] = []
            for raw in chunk:
                number += 1
                if number == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]  # Windows editors start UTF-8 files with one
                try:
                    text = _decode(raw)
                    if cls.json_input and not text.strip():
                        continue  # a blank line holds no JSON object (an editor's trailing newline, say)
                    item = cls.parse_line(text)
                except ValueError as e:
                    message = f"not valid JSON ({e})" if isinstance(e, json.JSONDecodeError) else str(e)
                    item = ValueError(message)
                numbers.append(number)
                parsed.append(item)
            good = [i for i, p in enumerate(parsed) if not isinstance(p, Exception)]
            results = pipe._run_checked([parsed[i] for i in good], checked, params, errors="return")
            for i, result in zip(good, results):
                parsed[i] = result
            for line, result in zip(numbers, parsed):
                if isinstance(result, Exception):
                    message = result.args[0] if isinstance(result, KeyError) and result.args else str(result)
                    if not skip_bad_lines:
                        sink.flush()
                        raise ValueError(
                            f"line {line}: {message} (--skip-bad-lines writes an error and goes on)"
                        )
                    bad += 1
                    result = {"error": message, "line": line}
                sink.write(json.dumps(result, ensure_ascii=False) + "\n")
            sink.flush()
            if bar is not None:
                bar.update(sum(map(len, chunk)) if input_path is not None else len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return bad


def _decode(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    return text.rstrip("\r\n")


def _open_input(path: str | os.PathLike | None) -> IO[bytes]:
    if path is None:
        return sys.stdin.buffer
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input file {p} does not exist")
    if p.is_dir():
        raise IsADirectoryError(f"input {p} is a directory; pass a text file with one input per line")
    try:
        return p.open("rb")
    except OSError as e:
        raise OSError(f"cannot read input file {p}: {e.strerror}") from None


class _Output:
    """stdout, or a file opened only once the model has loaded (a failed start leaves no empty file)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = path
        self.file: IO[str] | None = None

    def __enter__(self) -> IO[str]:
        if self.path is None:
            return sys.stdout
        try:
            self.file = Path(self.path).open("w", encoding="utf-8")
        except OSError as e:
            raise OSError(f"cannot write output file {self.path}: {e.strerror}") from None
        return self.file

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (a link to it included); False where either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
