"""The CLI's promises to a user (issue 13): no file lost or overwritten without --force, every error one line
``ganrev: error: ...`` with exit 2 before any search and with nothing written, Ctrl-C reported with the
outputs already written (exit 130), --keep-going (exit 1), and compression split across processes by torchrun.

Most tests run the real entry point ``ganrev.cli.main`` in-process (fast); the torchrun tests start real
processes. Searches are tiny: these tests check files and messages, not compression quality.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganrev.codecs.gan
import ganrev.bitstream.container
import ganrev.io
import ganrev.pretrained
from ganrev.cli import main
from ganrev.models import save_generator
from ganrev.nets.dcgan import Generator, GeneratorConfig, init_weights

TINY = ["--iters", "2", "--restarts", "1", "--pool", "0", "--refine-iters", "1"]
SHIPPED = Path(__file__).resolve().parent.parent / "pretrained" / "emoji64"
REPO = SHIPPED.parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> str:
    """A tiny random generator: fast to load and search; files made with it decode with it."""
    root = tmp_path_factory.mktemp("gen")
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(latent_dim=8, channels=3, resolution=16, width=4))
    generator.apply(init_weights)
    save_generator(generator, root / "gen", {"dataset": "test"})
    return str(root / "gen")


def make_image(path: Path, size: tuple[int, int] = (16, 16), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``ganrev ARGS`` through the real entry point; (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    code = exited.value.code
    return (0 if code is None else int(code)), captured.out, captured.err


def one_line_error(code: int, err: str, *fragments: str) -> str:
    """Exit 2 and stderr exactly one line ``ganrev: error: ...`` holding every fragment."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("ganrev: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_search(monkeypatch):
    """Fail the test if a latent search starts: these errors must be found before it."""
    def refuse(self, images):
        raise AssertionError("the search started before the error was found")
    monkeypatch.setattr(ganrev.codecs.gan.GanCodec, "compress", refuse)


# --- decompress never overwrites what the user did not name -----------------------------------------

def test_decompress_default_name_keeps_the_original(capsys, tmp_path, gen):
    original = make_image(tmp_path / "a.png")
    before = original.read_bytes()
    code, _, err = run(capsys, "compress", original, "-g", gen, *TINY)
    assert code == 0, err
    code, out, err = run(capsys, "decompress", tmp_path / "a.grv", "-g", gen)
    assert code == 0, err
    assert original.read_bytes() == before  # the original a.png is untouched
    decoded = tmp_path / "a.dec.png"
    assert decoded.is_file() and "a.dec.png" in out
    with Image.open(decoded) as img:
        assert img.format == "PNG" and img.size == (16, 16)
    # The default output now exists: refused without --force, replaced with it.
    decoded.write_bytes(b"keep me")
    code, _, err = run(capsys, "decompress", tmp_path / "a.grv", "-g", gen)
    one_line_error(code, err, "output exists", "a.dec.png", "--force")
    assert decoded.read_bytes() == b"keep me"
    code, _, err = run(capsys, "decompress", tmp_path / "a.grv", "-g", gen, "--force")
    assert code == 0, err
    assert decoded.read_bytes() != b"keep me"


def test_decompress_help_names_the_default_output(capsys):
    code, out, _ = run(capsys, "decompress", "--help")
    assert code == 0 and "NAME.dec.png" in out and "--force" in out and "--keep-going" in out


@pytest.fixture
def grv(tmp_path, gen, capsys) -> Path:
    code, _, err = run(capsys, "compress", make_image(tmp_path / "src" / "b.png"), "-g", gen, "-o",
                       tmp_path / "b.grv", *TINY)
    assert code == 0, err
    return tmp_path / "b.grv"


def test_decompress_o_equal_to_the_input_is_refused_even_with_force(capsys, grv, gen):
    data = grv.read_bytes()
    for extra in ([], ["--force"]):
        code, _, err = run(capsys, "decompress", grv, "-g", gen, "-o", grv, *extra)
        one_line_error(code, err, "is one of the inputs")
        assert grv.read_bytes() == data


@pytest.mark.parametrize("name", ["other.grv", "x.jpg", "x.webp", "noformat.xyz"])
def test_decompress_o_with_a_suffix_that_is_not_a_lossless_image_is_refused(capsys, grv, gen, name):
    target = grv.parent / name
    code, _, err = run(capsys, "decompress", grv, "-g", gen, "-o", target)
    one_line_error(code, err, "must end in .png, .bmp, .tif, .tiff")
    assert not target.exists()


@pytest.mark.parametrize("suffix,fmt", [(".bmp", "BMP"), (".tif", "TIFF"), (".tiff", "TIFF"), (".PNG", "PNG")])
def test_decompress_writes_the_format_its_suffix_names(capsys, grv, gen, suffix, fmt):
    png, other = grv.parent / "ref.png", grv.parent / f"x{suffix}"
    assert run(capsys, "decompress", grv, "-g", gen, "-o", png)[0] == 0
    assert run(capsys, "decompress", grv, "-g", gen, "-o", other)[0] == 0
    with Image.open(other) as img:
        assert img.format == fmt
    assert torch.equal(ganrev.io.load_image(other), ganrev.io.load_image(png))  # lossless: the same pixels


def test_decompress_into_the_originals_folder_needs_force(capsys, tmp_path, gen):
    original = make_image(tmp_path / "c.png")
    before = original.read_bytes()
    assert run(capsys, "compress", original, "-g", gen, *TINY)[0] == 0
    code, _, err = run(capsys, "decompress", tmp_path / "c.grv", "-g", gen, "-o", tmp_path)
    one_line_error(code, err, "output exists", "c.png")
    assert original.read_bytes() == before


def test_decompress_many_files_to_one_file_is_refused(capsys, tmp_path, gen):
    files = []
    for name in "pq":
        assert run(capsys, "compress", make_image(tmp_path / f"{name}.png"), "-g", gen, *TINY)[0] == 0
        files.append(tmp_path / f"{name}.grv")
    code, _, err = run(capsys, "decompress", *files, "-g", gen, "-o", tmp_path / "one.png")
    one_line_error(code, err, "names one file but 2 inputs")
    assert not (tmp_path / "one.png").exists()


# --- compress: -o rules, existing outputs, inputs, writability ---------------------------------------

def test_compress_o_with_a_wrong_suffix_is_an_error_not_a_directory(capsys, tmp_path, gen, no_search):
    image = make_image(tmp_path / "a.png")
    code, _, err = run(capsys, "compress", image, "-g", gen, "-o", tmp_path / "out.png", *TINY)
    one_line_error(code, err, "out.png", ".grv")
    assert not (tmp_path / "out.png").exists()
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    code, _, err = run(capsys, "compress", image, "-g", gen, "-o", existing, *TINY)
    one_line_error(code, err, "existing file")
    assert existing.read_text() == "mine"


def test_compress_o_grv_for_several_images_is_refused(capsys, tmp_path, gen, no_search):
    images = [make_image(tmp_path / f"{n}.png") for n in "ab"]
    code, _, err = run(capsys, "compress", *images, "-g", gen, "-o", tmp_path / "x.grv", *TINY)
    one_line_error(code, err, "names one file but 2 images")
    assert not (tmp_path / "x.grv").exists()


def test_compress_o_equal_to_the_input_is_refused_even_with_force(capsys, tmp_path, gen, no_search):
    image = make_image(tmp_path / "a.png")
    before = image.read_bytes()
    for extra in ([], ["--force"]):
        code, _, err = run(capsys, "compress", image, "-g", gen, "-o", image, *extra, *TINY)
        one_line_error(code, err, "is one of the inputs")
        assert image.read_bytes() == before
    # A .grv given as an input would be its own output.
    fake = tmp_path / "z.grv"
    fake.write_bytes(b"GRV")
    code, _, err = run(capsys, "compress", fake, "-g", gen, "--force", *TINY)
    one_line_error(code, err, "is one of the inputs")
    assert fake.read_bytes() == b"GRV"


def test_compress_existing_output_needs_force(capsys, tmp_path, gen, monkeypatch):
    image = make_image(tmp_path / "a.png")
    target = tmp_path / "a.grv"
    target.write_bytes(b"precious")
    with monkeypatch.context() as patch:
        patch.setattr(ganrev.codecs.gan.GanCodec, "compress", lambda self, images: pytest.fail("search started"))
        code, _, err = run(capsys, "compress", image, "-g", gen, *TINY)
    one_line_error(code, err, "output exists", "a.grv", "--force")
    assert target.read_bytes() == b"precious"
    code, _, err = run(capsys, "compress", image, "-g", gen, "--force", *TINY)
    assert code == 0, err
    assert ganrev.bitstream.container.unpack_file(target.read_bytes())[0].mode == "latent"


def test_compress_into_an_unwritable_directory_fails_before_the_search(capsys, tmp_path, gen, no_search):
    image = make_image(tmp_path / "a.png")
    if os.geteuid() == 0:  # root writes into mode-555 folders; /proc refuses new files even to root
        locked = Path("/proc")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
    try:
        for out in (locked / "x.grv", locked / "sub"):
            code, _, err = run(capsys, "compress", image, "-g", gen, "-o", out, *TINY)
            one_line_error(code, err, "cannot write into", str(locked))
        assert not (locked / "x.grv").exists() and not (locked / "sub").exists()
    finally:
        if locked != Path("/proc"):
            locked.chmod(0o755)


def test_compress_into_a_path_below_a_file_fails_before_the_search(capsys, tmp_path, gen, no_search):
    image = make_image(tmp_path / "a.png")
    code, _, err = run(capsys, "compress", image, "-g", gen, "-o", tmp_path / "a.png" / "x.grv", *TINY)
    one_line_error(code, err, "not a directory")


def test_compress_o_dir_keeps_the_folder_layout(capsys, tmp_path, gen):
    make_image(tmp_path / "in" / "top.png")
    make_image(tmp_path / "in" / "sub" / "deep.png", seed=1)
    code, out, err = run(capsys, "compress", tmp_path / "in", "-g", gen, "-o", tmp_path / "out", "--json", *TINY)
    assert code == 0, err
    assert sorted(snapshot(tmp_path / "out")) == ["sub/deep.grv", "top.grv"]
    assert len(json.loads(out)) == 2



def test_compress_in_bf16_writes_a_file_that_decodes(capsys, tmp_path, gen):
    image = make_image(tmp_path / "a.png")
    code, out, err = run(capsys, "compress", image, "-g", gen, "--json", "--precision", "bf16", *TINY)
    assert code == 0, err
    code, _, err = run(capsys, "decompress", tmp_path / "a.grv", "-g", gen, "-o", tmp_path / "b.png")
    assert code == 0, err
    with Image.open(tmp_path / "b.png") as img:
        assert img.size == Image.open(image).size

# --- errors are one line, exit 2, before any search, nothing written ---------------------------------

@pytest.mark.parametrize("option,value", [
    ("--bits", "1"), ("--bits", "17"), ("--refine-iters", "-1"), ("--iters", "-1"), ("--restarts", "0"),
    ("--lr", "nan"), ("--lr", "inf"), ("--lr", "-1"), ("--pool", "-1"), ("--patience", "0"),
    ("--batch-size", "0"), ("--seed", str(2**64)), ("--loss", "psnr"), ("--init", "magic"), ("--effort", "-1"),
    ("--effort", "7"), ("--precision", "fp16"),
])
def test_compress_numeric_and_choice_options_are_validated(capsys, tmp_path, gen, no_search, option, value):
    image = make_image(tmp_path / "a.png")
    code, _, err = run(capsys, "compress", image, "-g", gen, *TINY, option, value)  # the last value counts
    one_line_error(code, err, f"invalid {option}")
    assert snapshot(tmp_path) == {"a.png": image.read_bytes()}


@pytest.mark.parametrize("command", ["compress", "decompress", "generate"])
def test_an_unknown_device_is_one_line(capsys, tmp_path, gen, no_search, command):
    target = make_image(tmp_path / "a.png") if command == "compress" else tmp_path / "a.grv"
    args = [command] + ([target] if command != "generate" else ["-o", tmp_path / "g.png"])
    code, _, err = run(capsys, *args, "-g", gen, "--device", "tpu")
    one_line_error(code, err, "invalid --device 'tpu'")
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "a.grv").exists()


@pytest.mark.parametrize("n", ["0", "-1"])
def test_generate_needs_at_least_one_sample(capsys, tmp_path, gen, n):
    code, _, err = run(capsys, "generate", "-g", gen, "-n", n, "-o", tmp_path / "g.png")
    one_line_error(code, err, f"invalid -n {n}")
    assert not (tmp_path / "g.png").exists()


def test_generate_does_not_overwrite_without_force(capsys, tmp_path, gen):
    target = tmp_path / "grid.png"
    target.write_bytes(b"mine")
    code, _, err = run(capsys, "generate", "-g", gen, "-n", "2", "-o", target)
    one_line_error(code, err, "output exists", "--force")
    assert target.read_bytes() == b"mine"
    code, _, err = run(capsys, "generate", "-g", gen, "-n", "2", "-o", tmp_path / "grid.jpg")
    one_line_error(code, err, "must end in .png, .bmp, .tif, .tiff")
    code, _, err = run(capsys, "generate", "-g", gen, "-n", "2", "-o", target, "--force")
    assert code == 0, err
    with Image.open(target) as img:
        assert img.format == "PNG"


def test_generate_into_a_directory_is_refused(capsys, tmp_path, gen):
    code, _, err = run(capsys, "generate", "-g", gen, "-n", "2", "-o", tmp_path)
    one_line_error(code, err, "is a directory")
    assert list(tmp_path.iterdir()) == []


def test_metrics_with_a_missing_lpips_weights_file_is_an_error(capsys, tmp_path):
    image = make_image(tmp_path / "a.png")
    code, _, err = run(capsys, "metrics", image, image, "--lpips-weights", tmp_path / "nothere.pth")
    one_line_error(code, err, "--lpips-weights", "no such file")


@pytest.mark.parametrize("size", [(1, 1), (2, 5)])
def test_a_too_small_image_leaves_nothing_behind(capsys, tmp_path, gen, no_search, size):
    image = make_image(tmp_path / "tiny.png", size)
    code, _, err = run(capsys, "compress", image, "-g", gen, *TINY)
    one_line_error(code, err, "tiny.png", f"{size[0]}x{size[1]}", "at least 3x3")
    assert sorted(snapshot(tmp_path)) == ["tiny.png"]


def test_one_unreadable_image_aborts_before_the_search(capsys, tmp_path, gen, no_search):
    make_image(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    make_image(tmp_path / "in" / "c.png")
    code, _, err = run(capsys, "compress", tmp_path / "in", "-g", gen, *TINY)
    one_line_error(code, err, "broken.png", "nothing was compressed", "--keep-going")
    assert sorted(snapshot(tmp_path / "in")) == ["a.png", "broken.png", "c.png"]


def test_damaged_grv_aborts_decompress_before_anything_is_written(capsys, tmp_path, grv, gen):
    damaged = tmp_path / "damaged.grv"
    damaged.write_bytes(grv.read_bytes()[:-2])
    code, _, err = run(capsys, "decompress", grv, damaged, "-g", gen, "-o", tmp_path / "dec")
    one_line_error(code, err, "damaged.grv", "nothing was decoded")
    assert not (tmp_path / "dec").exists()
    code, _, err = run(capsys, "info", damaged)
    one_line_error(code, err, "damaged.grv")


# --- --keep-going ------------------------------------------------------------------------------------

def test_keep_going_compresses_the_rest_and_exits_1(capsys, tmp_path, gen):
    folder = tmp_path / "in"
    make_image(folder / "a.png")
    (folder / "broken.png").write_bytes(b"not a png")
    make_image(folder / "tiny.png", (1, 1))
    make_image(folder / "z.png", seed=2)
    code, out, err = run(capsys, "compress", folder, tmp_path / "missing.png", "-g", gen, "-o", tmp_path / "out",
                         "--keep-going", "--json", *TINY)
    assert code == 1, err
    assert [Path(r["input"]).name for r in json.loads(out)] == ["a.png", "z.png"]
    assert sorted(snapshot(tmp_path / "out")) == ["a.grv", "z.grv"]
    skipped = err[err.index("ganrev: skipped 3 unusable inputs:"):].splitlines()[1:]
    assert len(skipped) == 3
    for name in ("broken.png", "tiny.png", "missing.png"):
        assert sum(name in line for line in skipped) == 1


def test_keep_going_decompress(capsys, tmp_path, grv, gen):
    damaged = tmp_path / "damaged.grv"
    damaged.write_bytes(grv.read_bytes()[:-2])
    code, out, err = run(capsys, "decompress", damaged, grv, "-g", gen, "-o", tmp_path / "dec", "--keep-going")
    assert code == 1
    assert sorted(snapshot(tmp_path / "dec")) == ["b.png"]
    assert "skipped 1 unusable input" in err and "damaged.grv" in err


# --- Ctrl-C ------------------------------------------------------------------------------------------

def test_ctrl_c_during_compress_lists_the_written_outputs(capsys, tmp_path, gen, monkeypatch):
    for k, name in enumerate("abc"):
        make_image(tmp_path / "in" / f"{name}.png", seed=k)
    real, calls = ganrev.codecs.gan.GanCodec.compress, []

    def interrupted_second_time(self, images):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, images)

    monkeypatch.setattr(ganrev.codecs.gan.GanCodec, "compress", interrupted_second_time)
    # --batch-size 1 with one restart: one image per search group, so a.grv is written before b's search.
    code, _, err = run(capsys, "compress", tmp_path / "in", "-g", gen, "-o", tmp_path / "out", "--batch-size", "1",
                       "--json", *TINY)
    assert code == 130
    assert "ganrev: interrupted" in err.splitlines()
    assert f"ganrev: 1 of 3 outputs were written: {tmp_path / 'out' / 'a.grv'}" in err.splitlines()
    assert sorted(snapshot(tmp_path / "out")) == ["a.grv"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary file left


def test_ctrl_c_during_decompress_lists_the_written_outputs(capsys, tmp_path, gen, monkeypatch):
    files = []
    for k, name in enumerate("abc"):
        assert run(capsys, "compress", make_image(tmp_path / f"{name}.png", seed=k), "-g", gen, *TINY)[0] == 0
        files.append(tmp_path / f"{name}.grv")
    real, calls = ganrev.io.save_image, []

    def interrupted_third_time(image, path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(image, path)

    monkeypatch.setattr(ganrev.io, "save_image", interrupted_third_time)
    code, _, err = run(capsys, "decompress", *files, "-g", gen, "-o", tmp_path / "dec")
    assert code == 130
    lines = err.splitlines()
    assert "ganrev: interrupted" in lines
    assert any(line.startswith("ganrev: 2 of 3 outputs were written:") and "a.png" in line and "b.png" in line
               for line in lines)
    assert sorted(snapshot(tmp_path / "dec")) == ["a.png", "b.png"]


def test_ctrl_c_outside_a_batch_says_interrupted(capsys, tmp_path, gen, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("ganrev.cli.train.load_named_generator", interrupted)
    code, _, err = run(capsys, "generate", "-g", gen, "-o", tmp_path / "g.png")
    assert code == 130 and "ganrev: interrupted" in err.splitlines()


# --- the cause of a name clash -----------------------------------------------------------------------

def test_same_stem_in_one_folder_names_the_real_cause(capsys, tmp_path, gen, no_search):
    make_image(tmp_path / "y.png")
    Image.open(tmp_path / "y.png").save(tmp_path / "y.jpg")
    code, _, err = run(capsys, "compress", tmp_path / "y.png", tmp_path / "y.jpg", "-g", gen, *TINY)
    line = one_line_error(code, err, "y.png", "y.jpg", "y.grv", "same name apart from the suffix")
    assert "different folders" not in line


def test_same_name_in_different_folders_names_the_real_cause(capsys, tmp_path, gen, no_search):
    a, b = make_image(tmp_path / "a" / "y.png"), make_image(tmp_path / "b" / "y.png", seed=1)
    code, _, err = run(capsys, "compress", a, b, "-g", gen, "-o", tmp_path / "out", *TINY)
    one_line_error(code, err, "same file name in different folders")


def test_a_path_given_twice_is_compressed_once(capsys, tmp_path, gen):
    image = make_image(tmp_path / "in" / "a.png")
    code, out, err = run(capsys, "compress", image, tmp_path / "in", str(image).replace("/in/", "/in/./"), "-g", gen,
                         "-o", tmp_path / "out", "--json", *TINY)
    assert code == 0, err
    assert len(json.loads(out)) == 1
    assert sorted(snapshot(tmp_path / "out")) == ["a.grv"]


# --- torchrun ----------------------------------------------------------------------------------------

def torchrun(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "ganrev", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def test_torchrun_splits_a_batch_between_processes(capsys, tmp_path):
    images = sorted((SHIPPED / "heldout").glob("*.png"))[:4]
    folder = tmp_path / "in"
    folder.mkdir()
    for image in images:
        (folder / image.name).write_bytes(image.read_bytes())
    proc = torchrun("compress", str(folder), "-o", str(tmp_path / "out"), "-g", str(SHIPPED), "--json",
                    "--device", "cpu", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)  # rank 0's summary only: one JSON document on stdout
    assert [Path(r["input"]).name for r in rows] == [image.name for image in images]  # each once, in order
    assert {r["rank"] for r in rows} == {0, 1}
    assert [r["rank"] for r in rows] == [0, 1, 0, 1]  # rank r took inputs r, r + 2
    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outputs] == [image.with_suffix(".grv").name for image in images]
    for row in rows:
        assert Path(row["output"]).stat().st_size == row["bytes"]
    code, out, err = run(capsys, "decompress", *outputs, "-g", SHIPPED, "-o", tmp_path / "dec", "--device", "cpu")
    assert code == 0, err
    assert len(list((tmp_path / "dec").iterdir())) == 4


def test_torchrun_error_on_one_rank_stops_every_rank_before_the_search(tmp_path):
    images = sorted((SHIPPED / "heldout").glob("*.png"))[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for image in images:
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / f"{images[0].stem}z-broken.png").write_bytes(b"junk")  # sorts second: rank 1's share
    proc = torchrun("compress", str(folder), "-o", str(tmp_path / "out"), "-g", str(SHIPPED), "--device", "cpu",
                    *TINY, timeout=180)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ganrev: error:")]
    assert len(errors) == 1 and "broken.png" in errors[0] and "nothing was compressed" in errors[0], proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["table"], ["fit-generator", "--out", "never-written"]])
def test_a_bad_device_is_one_line_for_table_and_training(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["ganrev", *command, "--device", "tpu"])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("ganrev: error: invalid --device 'tpu'") and "Traceback" not in err
    assert not (tmp_path / "never-written").exists()


def test_a_file_from_a_shipped_generator_names_it(capsys, tmp_path, gen, monkeypatch):
    """Decoding with the wrong generator: when a shipped generator made the file, the error says which."""
    shipped = tmp_path / "pretrained"
    shutil.copytree(gen, shipped / "tiny-shipped")
    monkeypatch.setattr(ganrev.pretrained, "PRETRAINED_DIR", shipped)
    image = make_image(tmp_path / "a.png")
    code, _, err = run(capsys, "compress", image, "-g", "tiny-shipped", "--iters", "1", "--refine-iters", "0",
                       "--device", "cpu")
    assert code == 0, err
    torch.manual_seed(1)
    other = Generator(GeneratorConfig(latent_dim=8, channels=3, resolution=16, width=4))
    other.apply(init_weights)
    save_generator(other, tmp_path / "other", {"dataset": "test"})
    code, _, err = run(capsys, "decompress", tmp_path / "a.grv", "-g", tmp_path / "other", "--device", "cpu")
    one_line_error(code, err, "another generator", "add -g tiny-shipped")
    assert not (tmp_path / "a.dec.png").exists()
