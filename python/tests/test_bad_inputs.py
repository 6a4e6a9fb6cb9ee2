"""A catalogue of bad inputs across every command: each must exit non-zero with one line
naming the problem (not the generic 'unexpected' fallback), no traceback, and leave every
input file as it was (hashed before and after). The model is trained once (1 epoch)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bad_inputs import (
    make_10x_variants,
    make_h5ad_variants,
    make_model_variants,
    other_cells,
    other_genes,
    write_samplesheets,
)
from cli_helpers import run

CLI = [sys.executable, "-m", "pertcontrast.cli"]
PP = ["--perturbation-key", "perturbation", "--control-label", "control"]


def _cli(args, cwd=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PERTCONTRAST_MLFLOW="0")
    done = subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def f(tiny_screen, tiny_prepared, tmp_path_factory):
    """Every input of the catalogue, by name (paths)."""
    root = tmp_path_factory.mktemp("catalogue")
    files = {"root": root, "prepared": root / "prepared.h5ad"}
    tiny_prepared.write_h5ad(files["prepared"])
    files.update(make_h5ad_variants(tiny_screen, root))
    files.update(make_10x_variants(root))
    files["model"] = root / "model"
    _cli(["train", files["prepared"], "--output", files["model"], "--max-epochs", "1", "--n-hidden", "16",
          "--batch-size", "128", "--no-early-stopping", "--no-mlflow", "--no-progress", "--device", "cpu"])
    files["latents"] = root / "latents.h5ad"
    _cli(["export", files["prepared"], "--model", files["model"], "--output", files["latents"], "--device", "cpu"])
    files["responders"] = root / "responders.h5ad"
    _cli(["responders", files["prepared"], "--latents", files["latents"], "--output", files["responders"]])
    files.update({f"model_{k}": v for k, v in make_model_variants(files["model"], root).items()})
    files["other_genes"] = other_genes(files["prepared"], root / "other_genes.h5ad")
    files["other_cells"] = other_cells(files["latents"], root / "other_cells.h5ad")
    files.update({f"sheet_{k}": v for k, v in write_samplesheets(root, files["prepared"]).items()})
    for name in ("de_empty", "effects_empty", "a_folder"):
        files[name] = root / name
        files[name].mkdir()
    files["a_file"] = root / "a_file.txt"
    files["a_file"].write_text("not a folder\n")
    files["json_bad"] = root / "report.json"
    files["json_bad"].write_text("{oops")
    files["schema_bad"] = root / "schema.json"
    files["schema_bad"].write_text("not json")
    files["mlflow_run_bad"] = root / "model_mlflow_bad"
    files["mlflow_run_bad"].mkdir()
    (files["mlflow_run_bad"] / "mlflow_run.json").write_text("{broken")
    return files


def out(name):
    """A fresh output in the case's own folder."""
    return ("OUT", name)


def sub(folder, name):
    """A path inside an input folder."""
    return ("SUB", folder, name)


H = "--device"
# (case id, arguments, pattern the message must match)
CASES = [
    # simulate
    ("simulate-bad-preset", ["simulate", "--preset", "nope", "--output", out("s.h5ad")], r"'nope' is not one of 'tiny'"),
    ("simulate-few-cells", ["simulate", "--preset", "tiny", "--n-cells", "10", "--output", out("s.h5ad")],
     r"'--n-cells': 10 is not in the range x>=50"),
    ("simulate-output-dir", ["simulate", "--preset", "tiny", "--output", "{a_folder}"], r"a_folder' is a directory"),
    ("simulate-parent-file", ["simulate", "--preset", "tiny", "--output", sub("a_file", "s.h5ad")],
     r"is a file, not a folder"),
    # preprocess: the counts
    *[(f"preprocess-{name}", ["preprocess", "{" + name + "}", *PP, "--output", out("p.h5ad")], pattern)
      for name, pattern in [
          ("lognorm", r"non-integer values"), ("negative", r"negative values"), ("nan", r"NaN or infinite"),
          ("dup_genes", r"duplicate gene names"), ("dup_cells", r"duplicate cell names"),
          ("no_column", r"no perturbation column 'perturbation'"),
          ("blank_labels", r"column 'perturbation' is blank for 2 cells \(rows 2, 6"),
          ("space_labels", r"column 'perturbation' is blank for 3 cells"),
          ("nan_labels", r"'perturbation' is empty for 1 cells"),
          ("no_controls", r"control label 'control' not found"), ("few_controls", r"only 5 control cells"),
          ("only_controls", r"no perturbed cells"), ("empty", r"count matrix is empty"),
          ("truncated", r"truncated\.h5ad.*(truncated or corrupt|not a readable HDF5)"),
          ("zero_bytes", r"zero_bytes\.h5ad.*(truncated or corrupt|not a readable HDF5)"),
          ("text_h5ad", r"text\.h5ad.*(truncated or corrupt|not a readable HDF5)"),
          ("no_x", r"no_x\.h5ad.*(truncated or corrupt|no X|count matrix)"),
          ("csv", r"unknown file type '\.csv'"),
          ("h5_no_data", r"no_data\.h5.*(truncated or corrupt|missing)"),
          ("h5_no_matrix", r"no_matrix\.h5.*(truncated or corrupt|missing)"),
          ("h5_text", r"text\.h5.*(truncated or corrupt|not a readable HDF5)"),
          ("mtx_empty", r"no matrix\.mtx"),
      ]],
    ("preprocess-blank-batch", ["preprocess", "{raw}", *PP, "--batch-key", "batch", "--output", out("p.h5ad")], None),
    ("preprocess-blank-batch-value", ["preprocess", "{blank_batch}", *PP, "--batch-key", "batch", "--output",
                                      out("p.h5ad")], r"covariate column 'batch' is blank for 1 cells"),
    ("preprocess-text-covariate", ["preprocess", "{text_covariate}", *PP, "--continuous-covariate", "depth",
                                   "--output", out("p.h5ad")], r"non-numeric.*--categorical-covariate"),
    ("preprocess-batch-absent", ["preprocess", "{raw}", *PP, "--batch-key", "lane", "--output", out("p.h5ad")],
     r"no covariate column 'lane'.*--batch-key"),
    ("preprocess-wrong-key", ["preprocess", "{raw}", "--perturbation-key", "perturbatoin", "--control-label",
                              "control", "--output", out("p.h5ad")], r"Did you mean 'perturbation'"),
    ("preprocess-wrong-control", ["preprocess", "{raw}", "--perturbation-key", "perturbation", "--control-label",
                                  "Control", "--output", out("p.h5ad")], r"control label 'Control' not found"),
    ("preprocess-layer-absent", ["preprocess", "{raw}", *PP, "--layer", "counts", "--output", out("p.h5ad")],
     r"no layer 'counts'"),
    ("preprocess-n-top-genes", ["preprocess", "{raw}", *PP, "--n-top-genes", "5", "--output", out("p.h5ad")],
     r"--n-top-genes must be at least 10"),
    ("preprocess-max-qc-drop", ["preprocess", "{raw}", *PP, "--max-qc-drop", "2", "--output", out("p.h5ad")],
     r"--max-qc-drop must be between 0 and 1"),
    ("preprocess-max-pct-mito", ["preprocess", "{raw}", *PP, "--max-pct-mito", "0", "--output", out("p.h5ad")],
     r"--max-pct-mito must be in"),
    ("preprocess-min-counts", ["preprocess", "{raw}", *PP, "--min-counts", "-1", "--output", out("p.h5ad")],
     r"--min-counts must be 0 or more"),
    ("preprocess-qc-drops-all", ["preprocess", "{raw}", *PP, "--min-counts", "100000000", "--output",
                                 out("p.h5ad")], r"QC would drop"),
    ("preprocess-gene-symbol-key", ["preprocess", "{raw}", *PP, "--gene-symbol-key", "symbol", "--output",
                                    out("p.h5ad")], r"no column 'symbol'.*--gene-symbol-key"),
    ("preprocess-chunked-10x", ["preprocess", "{h5}", *PP, "--chunked", "--output", out("p.h5ad")],
     r"needs an \.h5ad file"),
    ("preprocess-output-is-input", ["preprocess", "{raw}", *PP, "--output", "{raw}"], r"is also an input"),
    ("preprocess-output-into-mtx-input", ["preprocess", "{mtx_empty}", *PP, "--output", sub("mtx_empty", "p.h5ad")],
     r"inside the input folder"),
    ("preprocess-output-dir", ["preprocess", "{raw}", *PP, "--output", "{a_folder}"], r"a_folder' is a directory"),
    ("preprocess-parent-file", ["preprocess", "{raw}", *PP, "--output", sub("a_file", "p.h5ad")],
     r"is a file, not a folder"),
    ("preprocess-missing-input", ["preprocess", out("absent.h5ad"), *PP, "--output", out("p.h5ad")],
     r"does not exist"),
    # assign-guides
    ("guides-bad-class", ["assign-guides", "{h5}", "--guide-table", "{guides_bad_class}", "--output", out("g.h5ad")],
     r"'scrambled' is not a guide class"),
    ("guides-no-target", ["assign-guides", "{h5}", "--guide-table", "{guides_no_target}", "--output",
                          out("g.h5ad")], r"no 'target' column"),
    ("guides-latin1", ["assign-guides", "{h5}", "--guide-table", "{guides_latin1}", "--output", out("g.h5ad")],
     r"guides_latin1\.csv.*'utf-8' codec can't decode byte 0xe9"),
    ("guides-duplicate", ["assign-guides", "{h5}", "--guide-table", "{guides_dup}", "--output", out("g.h5ad")],
     r"duplicate guide"),
    ("guides-other-table", ["assign-guides", "{h5}", "--guide-table", "{guides_other}", "--output", out("g.h5ad")],
     r"none of its \d+ guides is in the guide table"),
    ("guides-no-capture", ["assign-guides", "{no_guides_h5}", "--guide-table", "{guide_table}", "--output",
                           out("g.h5ad")], r"no 'CRISPR Guide Capture' features"),
    ("guides-counts-truncated", ["assign-guides", "{h5_text}", "--guide-table", "{guide_table}", "--output",
                                 out("g.h5ad")], r"text\.h5.*(corrupt|not a readable HDF5)"),
    ("guides-min-fraction", ["assign-guides", "{h5}", "--guide-table", "{guide_table}", "--min-guide-fraction",
                             "1.5", "--output", out("g.h5ad")], r"--min-guide-fraction must be between 0 and 1"),
    ("guides-min-umis", ["assign-guides", "{h5}", "--guide-table", "{guide_table}", "--min-guide-umis", "0",
                         "--output", out("g.h5ad")], r"--min-guide-umis must be at least 1"),
    ("guides-output-is-table", ["assign-guides", "{h5}", "--guide-table", "{guide_table}", "--output",
                                "{guide_table}"], r"is also an input"),
    ("guides-qc-dir-file", ["assign-guides", "{h5}", "--guide-table", "{guide_table}", "--output", out("g.h5ad"),
                            "--qc-dir", "{a_file}"], r"'--qc-dir'.*a_file\.txt' is a file"),
    # train
    *[(f"train-{name}", ["train", "{" + name + "}", "--output", out("m"), "--no-mlflow", "--max-epochs", "1"],
       pattern) for name, pattern in [
        ("truncated", r"truncated\.h5ad.*(truncated or corrupt|not a readable HDF5)"),
        ("text_h5ad", r"text\.h5ad.*(truncated or corrupt|not a readable HDF5)"),
        ("blank_labels", r"blank"), ("no_controls", r"(not found|control)"),
    ]],
    ("train-batch-key-absent", ["train", "{prepared}", "--output", out("m"), "--batch-key", "lane", "--no-mlflow"],
     r"no covariate column 'lane'.*--batch-key"),
    ("train-categorical-absent", ["train", "{prepared}", "--output", out("m"), "--categorical-covariate", "lane",
                                  "--no-mlflow"], r"no covariate column 'lane'.*--categorical-covariate"),
    ("train-nuisance-absent", ["train", "{prepared}", "--output", out("m"), "--nuisance-key", "lane",
                               "--no-mlflow"], r"no nuisance column 'lane'.*--nuisance-key"),
    ("train-nuisance-text", ["train", "{prepared}", "--output", out("m"), "--nuisance-key", "batch",
                             "--no-mlflow"], r"nuisance column 'batch' is not numeric.*--nuisance-key"),
    ("train-nuisance-weight", ["train", "{prepared}", "--output", out("m"), "--nuisance-weight", "-1",
                               "--no-mlflow"], r"--nuisance-weight must be 0 or more"),
    ("train-perturbation-key", ["train", "{prepared}", "--output", out("m"), "--perturbation-key", "nope",
                                "--no-mlflow"], r"no perturbation column 'nope'"),
    ("train-control-label", ["train", "{prepared}", "--output", out("m"), "--control-label", "nope", "--no-mlflow"],
     r"control label 'nope' not found"),
    ("train-n-hidden", ["train", "{prepared}", "--output", out("m"), "--n-hidden", "0", "--no-mlflow"],
     r"--n-hidden must be at least 1"),
    ("train-dropout", ["train", "{prepared}", "--output", out("m"), "--dropout", "1.5", "--no-mlflow"],
     r"--dropout must be in \[0, 1\)"),
    ("train-control-fraction", ["train", "{prepared}", "--output", out("m"), "--control-fraction", "2",
                                "--no-mlflow", "--max-epochs", "1"], r"--control-fraction must be between 0 and 1"),
    ("train-tag-format", ["train", "{prepared}", "--output", out("m"), "--tag", "novalue"], r"is not KEY=VALUE"),
    ("train-register-no-mlflow", ["train", "{prepared}", "--output", out("m"), "--no-mlflow", "--register-model",
                                  "x"], r"--register-model/--model-alias need MLflow"),
    ("train-output-is-input", ["train", "{prepared}", "--output", "{prepared}", "--no-mlflow"],
     r"(is also an input|is a file)"),
    ("train-output-file", ["train", "{prepared}", "--output", "{a_file}", "--no-mlflow"],
     r"'--output'.*a_file\.txt' is a file"),
    ("train-output-holds-input", ["train", sub("a_folder", "x.h5ad"), "--output", "{a_folder}", "--no-mlflow"],
     r"does not exist"),
    ("train-input-folder", ["train", "{model}", "--output", out("m"), "--no-mlflow"], r"is a directory"),
    ("train-output-parent-file", ["train", "{prepared}", "--output", sub("a_file", "m"), "--no-mlflow"],
     r"a_file\.txt is a file, not a folder"),
    # export: the model folder
    *[(f"export-model-{name}", ["export", "{prepared}", "--model", "{model_" + name + "}", "--output",
                                out("l.h5ad"), H, "cpu"], pattern) for name, pattern in [
        ("no_config", r"not a complete model folder"), ("no_weights", r"not a complete model folder"),
        ("config_not_json", r"config\.json is not valid JSON"),
        ("config_list", r"config\.json lacks the 'architecture' and 'registry'"),
        ("format_99", r"model folder format 99; this pertcontrast .* reads formats 1 to"),
        ("format_text", r"model folder format 'two'"),
        ("genes_short", r"config\.json lists \d+ genes but its architecture has \d+"),
        ("genes_dup", r"duplicate gene names"),
        ("arch_bigger", r"model\.pt does not match config\.json"),
        ("arch_bad_likelihood", r"damaged .architecture. or .registry. entry"),
        ("no_registry", r"lacks the 'architecture' and 'registry'"),
        ("weights_truncated", r"model\.pt cannot be read"), ("weights_text", r"model\.pt cannot be read \(not a weights"),
        ("weights_tampered", r"model\.pt holds objects other than weights"),
        ("weights_pickle", r"model\.pt (holds objects other than weights|cannot be read)"),
        ("history_empty", r"history\.csv cannot be read"), ("history_garbage", r"history\.csv has no epochs"),
        ("split_corrupt", r"cell_split\.csv\.gz cannot be read"),
        ("registry_corrupt", r"registry\.json is not valid JSON"),
        ("registry_list", r"registry\.json is not a JSON object"),
        ("empty", r"not a complete model folder"),
    ]],
    ("export-model-absent", ["export", "{prepared}", "--model", out("nomodel"), "--output", out("l.h5ad")],
     r"no such model folder"),
    ("export-other-genes", ["export", "{other_genes}", "--model", "{model}", "--output", out("l.h5ad"), H, "cpu"],
     r"of the model's \d+ genes are missing"),
    ("export-input-truncated", ["export", "{truncated}", "--model", "{model}", "--output", out("l.h5ad")],
     r"truncated\.h5ad.*(truncated or corrupt|not a readable HDF5)"),
    ("export-output-is-input", ["export", "{prepared}", "--model", "{model}", "--output", "{prepared}"],
     r"is also an input"),
    ("export-output-in-model", ["export", "{prepared}", "--model", "{model}", "--output", sub("model", "l.h5ad")],
     r"inside the input folder"),
    ("export-output-dir", ["export", "{prepared}", "--model", "{model}", "--output", "{a_folder}"], r"a_folder' is a directory"),
    ("export-registry-no-server", ["export", "{prepared}", "--model", "models:/x@champion", "--output",
                                   out("l.h5ad")], r"(tracking server|MLFLOW_TRACKING_URI)"),
    ("export-requested-folder", ["export", "{prepared}", "--model", "{model}", "--requested-model",
                                 "models:/x@a", "--output", out("l.h5ad")], r"--requested-model goes with"),
    ("export-batch-size", ["export", "{prepared}", "--model", "{model}", "--batch-size", "0", "--output",
                           out("l.h5ad")], r"--batch-size"),
    # responders
    ("responders-latents-prepared", ["responders", "{prepared}", "--latents", "{prepared}", "--output",
                                     out("r.h5ad")], r"no \.obsm\['X_salient'\]"),
    ("responders-other-cells", ["responders", "{prepared}", "--latents", "{other_cells}", "--output",
                                out("r.h5ad")], r"cells are not the [\d,]+ cells"),
    ("responders-latents-truncated", ["responders", "{prepared}", "--latents", "{truncated}", "--output",
                                      out("r.h5ad")], r"truncated\.h5ad.*(corrupt|not a readable)"),
    ("responders-output-is-latents", ["responders", "{prepared}", "--latents", "{latents}", "--output",
                                      "{latents}"], r"is also an input"),
    ("responders-table-is-prepared", ["responders", "{prepared}", "--latents", "{latents}", "--output",
                                      out("r.h5ad"), "--table", "{prepared}"], r"is also an input"),
    ("responders-null-quantile", ["responders", "{prepared}", "--latents", "{latents}", "--output", out("r.h5ad"),
                              "--null-quantile", "1.5"], r"--null-quantile"),
    ("responders-control-label", ["responders", "{prepared}", "--latents", "{latents}", "--output", out("r.h5ad"),
                                  "--control-label", "nope"], r"'nope'"),
    ("responders-model-format", ["responders", "{prepared}", "--latents", "{latents}", "--model",
                                 "{model_format_99}", "--output", out("r.h5ad")], r"model folder format 99"),
    ("responders-model-genes", ["responders", "{prepared}", "--latents", "{latents}", "--model",
                                "{model_genes_short}", "--output", out("r.h5ad")], r"lists \d+ genes but"),
    # de
    ("de-model-format", ["de", "{prepared}", "--model", "{model_format_99}", "--output", out("de")],
     r"model folder format 99"),
    ("de-model-genes", ["de", "{prepared}", "--model", "{model_genes_short}", "--output", out("de")],
     r"lists \d+ genes but"),
    ("de-responders-other", ["de", "{prepared}", "--model", "{model}", "--responders", "{other_cells}",
                             "--responders-only", "--output", out("de"), H, "cpu"], r"cells are not the"),
    ("de-output-file", ["de", "{prepared}", "--model", "{model}", "--output", "{a_file}"], r"is a file"),
    ("de-output-model", ["de", "{prepared}", "--model", "{model}", "--output", "{model}"], r"is also an input"),
    ("de-fdr", ["de", "{prepared}", "--model", "{model}", "--output", out("de"), "--fdr", "2"], r"--fdr"),
    ("de-other-genes", ["de", "{other_genes}", "--model", "{model}", "--output", out("de"), H, "cpu"],
     r"genes are missing"),
    # effects
    ("effects-de-empty", ["effects", "{prepared}", "--latents", "{latents}", "--de", "{de_empty}", "--output",
                          out("e")], r"de_empty"),
    ("effects-latents-prepared", ["effects", "{prepared}", "--latents", "{prepared}", "--de", "{de_empty}",
                                  "--output", out("e")], r"X_salient"),
    ("effects-output-in-de", ["effects", "{prepared}", "--latents", "{latents}", "--de", "{de_empty}", "--output",
                              sub("de_empty", "e")], r"inside the input folder"),
    ("effects-output-is-de", ["effects", "{prepared}", "--latents", "{latents}", "--de", "{de_empty}", "--output",
                              "{de_empty}"], r"is also an input"),
    # generate
    ("generate-model-tampered", ["generate", "{prepared}", "--model", "{model_weights_tampered}", "--output",
                                 out("g.h5ad")], r"holds objects other than weights"),
    ("generate-output-is-input", ["generate", "{prepared}", "--model", "{model}", "--output", "{prepared}"],
     r"is also an input"),
    ("generate-other-genes", ["generate", "{other_genes}", "--model", "{model}", "--output", out("g.h5ad"), H,
                              "cpu"], r"genes are missing"),
    ("generate-mode", ["generate", "{prepared}", "--model", "{model}", "--output", out("g.h5ad"), "--mode", "x"],
     r"--mode"),
    # report
    ("report-latents-prepared", ["report", "{prepared}", "--latents", "{prepared}", "--model", "{model}",
                                 "--output-dir", out("rep")], r"X_salient"),
    ("report-model-bad", ["report", "{prepared}", "--latents", "{latents}", "--model", "{model_genes_short}",
                          "--output-dir", out("rep")], r"lists \d+ genes but"),
    ("report-model-empty", ["report", "{prepared}", "--latents", "{latents}", "--model", "{model_empty}",
                            "--output-dir", out("rep")], r"model_empty has no config\.json"),
    ("report-other-cells", ["report", "{prepared}", "--latents", "{other_cells}", "--model", "{model}",
                            "--output-dir", out("rep")], r"cells are not the"),
    ("report-output-file", ["report", "{prepared}", "--latents", "{latents}", "--model", "{model}",
                            "--output-dir", "{a_file}"], r"is a file"),
    ("report-output-in-model", ["report", "{prepared}", "--latents", "{latents}", "--model", "{model}",
                                "--output-dir", sub("model", "rep")], r"inside the input folder"),
    ("report-summary-json", ["summary", "--report-json", "{json_bad}", "--output", out("s.html")], r"report\.json"),
    # merge
    ("merge-other-cells", ["merge", "{prepared}", "{other_cells}", "--output", out("m.h5ad")],
     r"cells are not the"),
    ("merge-prepared-truncated", ["merge", "{truncated}", "{latents}", "--output", out("m.h5ad")],
     r"truncated\.h5ad.*(corrupt|not a readable)"),
    ("merge-step-text", ["merge", "{prepared}", "{text_h5ad}", "--output", out("m.h5ad")],
     r"text\.h5ad.*(corrupt|not a readable)"),
    ("merge-output-is-prepared", ["merge", "{prepared}", "{latents}", "--output", "{prepared}"],
     r"is also an input"),
    ("merge-output-is-step", ["merge", "{prepared}", "{latents}", "--output", "{latents}"], r"is also an input"),
    # check-samplesheet
    ("sheet-latin1", ["check-samplesheet", "{sheet_latin1}"], r"row 2: not UTF-8 text \(byte 0xe9"),
    ("sheet-utf16-damaged", ["check-samplesheet", "{sheet_utf16_damaged}"], r"(UTF-16|row)"),
    ("sheet-nul", ["check-samplesheet", "{sheet_nul}"], r"NUL bytes"),
    ("sheet-huge-field", ["check-samplesheet", "{sheet_huge_field}"], r"row 2: not readable as CSV"),
    ("sheet-empty", ["check-samplesheet", "{sheet_empty}"], r"the samplesheet is empty"),
    ("sheet-header-only", ["check-samplesheet", "{sheet_header_only}"], r"no screens"),
    ("sheet-missing-column", ["check-samplesheet", "{sheet_missing_column}"], r"required column is missing"),
    ("sheet-unknown-column", ["check-samplesheet", "{sheet_unknown_column}"], r"'colour'"),
    ("sheet-duplicate-id", ["check-samplesheet", "{sheet_duplicate_id}"], r"row 3, column 'id'.*(duplicate|also)"),
    ("sheet-missing-file", ["check-samplesheet", "{sheet_missing_file}"], r"row 2, column 'h5ad'"),
    ("sheet-bad-id", ["check-samplesheet", "{sheet_bad_id}"], r"row 2, column 'id'"),
    ("sheet-empty-value", ["check-samplesheet", "{sheet_empty_value}"], r"row 2, column 'perturbation_key'"),
    ("sheet-unclosed-quote", ["check-samplesheet", "{sheet_unclosed_quote}"], r"sheet_unclosed_quote\.csv"),
    ("sheet-schema-bad", ["check-samplesheet", "{sheet_header_only}", "--schema", "{schema_bad}"],
     r"schema\.json.*(JSON|json)"),
    ("sheet-output-is-sheet", ["check-samplesheet", "{sheet_duplicate_id}", "--output", "{sheet_duplicate_id}"],
     r"is also an input"),
    # registry and mlflow (offline)
    ("registry-list-no-server", ["registry", "list", "x"], r"(tracking server|MLFLOW_TRACKING_URI)"),
    ("registry-download-no-server", ["registry", "download", "x@champion", "--output", out("m")],
     r"(tracking server|MLFLOW_TRACKING_URI)"),
    ("registry-resolve-bad-spec", ["registry", "resolve", "no-alias-or-version", "--mlflow-uri", "sqlite:///x.db"],
     r"(NAME@ALIAS|NAME/VERSION|models:/)"),
    ("mlflow-sync-no-record", ["mlflow", "sync", "{model}", "--mlflow-uri", "http://127.0.0.1:9"],
     r"mlflow_run\.json"),
    ("mlflow-sync-bad-record", ["mlflow", "sync", "{mlflow_run_bad}", "--mlflow-uri", "http://127.0.0.1:9"],
     r"mlflow_run\.json"),
]
CASES = [case for case in CASES if case[2] is not None]


def _resolve(args, files, tmp_path):
    resolved = []
    for arg in args:
        if isinstance(arg, tuple) and arg[0] == "OUT":
            resolved.append(str(tmp_path / arg[1]))
        elif isinstance(arg, tuple) and arg[0] == "SUB":
            resolved.append(str(files[arg[1]] / arg[2]))
        elif isinstance(arg, str) and re.fullmatch(r"\{\w+\}", arg):
            resolved.append(str(files[arg[1:-1]]))
        else:
            resolved.append(str(arg))
    return resolved


def _listing(root: Path) -> dict[str, tuple]:
    """Every path under the catalogue folder with its size and modification time: no case
    may add (a lock, a temporary), remove or touch anything there."""
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _hashes(args: list[str], root: Path) -> dict[str, str]:
    """The contents of the inputs this case names (files, and the files of folders)."""
    hashes = {}
    for arg in args:
        path = Path(arg)
        if not (path.exists() and root in path.parents):
            continue
        for file in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
            hashes[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
    return hashes


@pytest.fixture(scope="module")
def listing(f):
    return _listing(f["root"])


def test_the_catalogue_is_large_and_spans_every_command():
    assert len(CASES) >= 100, len(CASES)
    commands = {args[0] for _, args, _ in CASES}
    assert {"simulate", "assign-guides", "preprocess", "train", "export", "responders", "de", "effects",
            "generate", "report", "summary", "merge", "check-samplesheet", "registry", "mlflow"} <= commands


@pytest.mark.parametrize("case, args, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_specific_line_and_changes_nothing(case, args, pattern, f, listing, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = _resolve(args, f, tmp_path)
    before = _hashes(args, f["root"])
    code, output = run(args)
    assert code != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, output
    assert not errors[0].startswith("Error: unexpected"), errors[0]  # the generic fallback
    assert re.search(pattern, errors[0]), errors[0]
    assert _hashes(args, f["root"]) == before, f"{case} changed an input"
    now = _listing(f["root"])
    changed = sorted(k for k in set(now) | set(listing) if now.get(k) != listing.get(k))
    assert not changed, f"{case} added, removed or touched {changed[:5]}"
