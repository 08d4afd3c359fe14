"""Searched against random against hand-designed networks, under one protocol (issue 13).

    python experiments/compare.py --stage plan           # stages, parts and estimated times
    python experiments/compare.py --stage searches       # then searched, random, baselines,
    python experiments/compare.py --stage random:2       #   budget, selection, searched_pt
    python experiments/compare.py --stage random@1/2     # (NAME:K: part K only; NAME@K/N: units
                                                         #  K, K + N, ...: N processes at once)
    python experiments/compare.py --stage report         # results.md, results.json, the plot
    python experiments/compare.py --stage all            # everything still missing, then report

Full Fashion-MNIST from the local IDX files (`fashion_mnist_local`), one training protocol
(configs/train_fashion_mnist.yaml, with its validation split) for every network:
- searches: `--budget`'s number (3) of independent searches (configs/search_fashion_mnist.yaml,
  seeds 0, 1, 2);
- searched: each derived network retrained with every seed;
- random: genotypes drawn uniformly from the same space under the derivation's rules
  (ubnas_tf/search_space/sampling.py), kept only within +-10% of the searched networks' mean
  OPs (random_genotypes.json, written once), each retrained with every seed;
- baselines: Bi-Real and QuickNet sized to the same OPs (baselines.json) and the float twin
  of the first search's cells, each with every seed;
- budget: the first searched and random networks retrained at a shorter and a longer budget;
  Kendall tau between their validation rankings says whether the protocol's budget ranks
  networks as the longer one does, at what cost;
- selection, searched_pt: the same searches' genotypes selected again by perturbation
  (DARTS-PT, tools/derive.py on each search's checkpoint, `Budget.selection_flags`), each
  retrained with every seed: the searches' magnitude rule against DARTS-PT's on the same
  supernets.
Model selection and rankings use the validation split only; the test split is read once per
trained network, with its final weights. Each (network, seed) is one JSON file under
`<output_dir>/units/` (committed), so the experiment resumes and grows across sessions;
tools' outputs go to --work_dir (not committed).
"""
import collections
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import flags  # noqa: E402

from experiments import protocol  # noqa: E402
from experiments.report import (fmt_mean_std, kendall_tau, mean_std,  # noqa: E402
                                percent, permutation_p, pooled_seed_std,
                                relative_improvement, run_text, scatter_runs, score)
from ubnas_tf import cli  # noqa: E402

flags.DEFINE_string("stage", "plan", "plan | searches | searched | random | baselines | budget "
                    "| selection | searched_pt | report | all; NAME:K runs the K-th part of a stage, "
                    "NAME@K/N its units K, K + N, ... (N processes side by side).")
flags.DEFINE_enum("budget", "full", sorted(protocol.BUDGETS), "full: the protocol on full "
                  "Fashion-MNIST; smoke: seconds per stage on the shipped demo data (tests).")
flags.DEFINE_string("output_dir", "docs/results/compare", "Results: units/, results.md, plot.")
flags.DEFINE_string("work_dir", "experiments/compare_run", "Tools' outputs (not committed).")
flags.DEFINE_string("dataset", None, "Override the budget's dataset (e.g. idx:PATH).")
FLAGS = flags.FLAGS
GROUPS = ("searched", "searched_pt", "random", "bireal", "quicknet", "float")


class Compare:
    def __init__(self, experiment: protocol.Experiment):
        self.exp = experiment
        self.budget = experiment.budget
        self.seeds = range(self.budget.seeds)

    # --- what the later stages need from the searches ---------------------------------------

    def searched_ops(self) -> list:
        from experiments.ops_matching import genotype_cost_model
        from ubnas_tf.search_space.genotype import Genotype

        search, train = self.exp.configs()
        model = genotype_cost_model(search, train, self.exp.dataset_info())
        return [model.genotype_ops(Genotype.from_dict(self.exp.result(f"search-{i}")["genotype"]))
                for i in range(self.budget.searches)]

    def random_genotypes(self) -> dict:
        def make():
            from experiments.ops_matching import random_genotypes_record

            search, train = self.exp.configs()
            return random_genotypes_record(
                search, train, self.exp.dataset_info(), count=self.budget.random,
                target=sum(self.searched_ops()) / self.budget.searches,
                tolerance=self.budget.ops_tolerance)

        return self.exp.written_once("random_genotypes.json", make)

    def baseline_sizes(self) -> dict:
        def make():
            from experiments.ops_matching import baseline_sizes_record

            return baseline_sizes_record(
                ("bireal", "quicknet"), self.exp.dataset_info(),
                target=sum(self.searched_ops()) / self.budget.searches,
                tolerance=self.budget.ops_tolerance)

        return self.exp.written_once("baselines.json", make)

    # --- the stages -------------------------------------------------------------------------

    def _searched(self, index):
        return lambda: self.exp.result(f"search-{index}")["genotype"]

    def _selected(self, index):
        return lambda: self.exp.result(f"derive_pt-{index}")["genotype"]

    def _random(self, index):
        return lambda: self.random_genotypes()["genotypes"][index]["genotype"]

    def _baseline_sets(self, name):
        from experiments.ops_matching import settings_as_sets

        return lambda: settings_as_sets(name, self.baseline_sizes()[name]["settings"])

    def stages(self) -> dict:
        exp, budget = self.exp, self.budget
        train = exp.train_unit
        return {
            "searches": lambda: [exp.search_unit(f"search-{i}", i) for i in range(budget.searches)],
            "searched": lambda: [
                train(f"searched-{i}_seed-{s}", "genotype", s, genotype=self._searched(i),
                      convert=self._converts("searched", s)) for i in range(budget.searches)
                for s in self.seeds],
            "random": lambda: [
                train(f"random-{j}_seed-{s}", "genotype", s, genotype=self._random(j),
                      convert=self._converts("random", s)) for j in range(budget.random)
                for s in self.seeds],
            "baselines": lambda: [
                *(train(f"{name}_seed-{s}", name, s, model=name, sets=self._baseline_sets(name),
                        convert=self._converts(name, s)) for name in ("bireal", "quicknet")
                  for s in self.seeds),
                *(train(f"float_seed-{s}", "float", s, model="float", genotype=self._searched(0),
                        convert=self._converts("float", s)) for s in self.seeds)],
            "budget": lambda: [
                train(self._budget_key(network, label, epochs), "genotype", 0, genotype=make,
                      sets=(f"epochs={epochs}",))
                for network, make in self._budget_networks()
                for label, epochs in zip(("short", "long"), budget.budget_epochs)
                if epochs != budget.train_epochs()],  # that run is the protocol's seed 0
            "selection": lambda: [
                exp.derive_unit(f"derive_pt-{i}", f"search-{i}", budget.selection_flags)
                for i in range(budget.searches)],
            "searched_pt": lambda: [
                train(f"searched_pt-{i}_seed-{s}", "genotype", s, genotype=self._selected(i))
                for i in range(budget.searches) for s in self.seeds],
        }

    def _converts(self, group, seed):
        return seed == 0 and group in self.budget.convert_groups

    def _budget_key(self, network, label, epochs):
        """The unit of `network` retrained for `epochs` (seed 0): the protocol's own run when
        the budget check asks for the protocol's epochs, never trained twice."""
        if epochs == self.budget.train_epochs():
            return f"{network}_seed-0"
        return f"budget-{label}-{epochs}ep_{network}"

    def _budget_networks(self):
        half = self.budget.budget_networks // 2
        searched = min(half, self.budget.searches)
        return ([(f"searched-{i}", self._searched(i)) for i in range(searched)]
                + [(f"random-{j}", self._random(j))
                   for j in range(self.budget.budget_networks - searched)])

    # --- the report -------------------------------------------------------------------------

    def runs(self) -> dict:
        """group -> list of (network, seed, result) of every finished run of the protocol."""
        groups = {name: [] for name in GROUPS}
        for unit in self.exp.all_units():
            key = unit["key"]
            if unit["kind"] in ("search", "derive") or key.startswith("budget-"):
                continue
            network, seed = key.rsplit("_seed-", 1)
            group = network.split("-")[0]
            groups[group].append((network, int(seed), unit["result"]))
        return groups

    def report(self) -> dict:
        from ubnas_tf.io_utils import atomic_write_json, atomic_write_text

        out = self.exp.results_dir
        runs = self.runs()
        searches = [self.exp.cached(f"search-{i}") for i in range(self.budget.searches)]
        search_seconds = {"searched": [s["result"]["search_seconds"] for s in searches if s],
                          "searched_pt": self.selection_seconds(searches)}
        planned = self.planned_runs()
        table = {"budget": self.budget.name, "dataset": self.budget.dataset,
                 "rows": [{**self._row(name, runs[name], search_seconds),
                           "planned_runs": planned[name]} for name in GROUPS],
                 "runs": {name: [{"network": n, "seed": s, **{k: v for k, v in r.items()
                                                              if k != "curve"}}
                                 for n, s, r in runs[name]] for name in GROUPS},
                 "budget_check": self.budget_check(),
                 "seed_noise": self.seed_noise(runs),
                 "cell_composition": self.cell_composition(runs)}
        for group, key in (("searched", "improvement_over_random"),
                           ("searched_pt", "selection_over_random")):
            if runs[group] and runs["random"]:
                table[key] = self.improvement(runs[group], runs["random"])
        if runs["searched_pt"]:
            # Paired: one supernet, two selection rules (the search's spread cancels out).
            magnitude = self.network_means(runs["searched"])
            table["selection_paired"] = [
                {"search": i, "magnitude": magnitude.get(f"searched-{i}"), "perturbation": value}
                for i, value in ((int(n.rsplit("-", 1)[1]), v) for n, v in
                                 self.network_means(runs["searched_pt"]).items())]
        atomic_write_json(out / "results.json", table)
        atomic_write_text(out / "results.md", self.markdown(table))
        scatter_runs({name: [(r["ops"], r["test_top1"]) for _, _, r in runs[name]]
                      for name in GROUPS}, out / "accuracy_vs_ops.png",
                     title=f"{self.budget.dataset}: test top-1 of every run against OPs")
        print(self.markdown(table), flush=True)
        return table

    @classmethod
    def improvement(cls, runs, random_runs) -> dict:
        """Yang et al.'s improvement over random (mean of runs against mean of random runs)
        and an exact permutation test on the networks' means over their seeds."""
        mean = mean_std([r["test_top1"] for _, _, r in runs])[0]
        points, percent = relative_improvement(
            mean, mean_std([r["test_top1"] for _, _, r in random_runs])[0])
        networks = {"searched": cls.network_means(runs),
                    "random": cls.network_means(random_runs)}
        return {"points": points, "relative_percent": percent, "network_means": networks,
                "permutation_p": permutation_p(list(networks["searched"].values()),
                                               list(networks["random"].values()))}

    @staticmethod
    def network_means(runs) -> dict:
        """network -> mean test top-1 over its seeds (the samples of the permutation test)."""
        by_network = collections.defaultdict(list)
        for network, _, result in runs:
            if result["test_top1"] is not None:  # a diverged run is listed, not averaged in
                by_network[network].append(result["test_top1"])
        return {network: sum(values) / len(values) for network, values in
                sorted(by_network.items())}

    def seed_noise(self, runs) -> dict | None:
        """What the seeds resolve: one retraining's spread around its network's mean (pooled
        over every network with 2+ finished runs), the difference two networks' means must
        exceed to be told apart at 95% with this budget's seeds (normal approximation), and
        the random networks' spread for scale (seeds and architecture together)."""
        by_network = collections.defaultdict(list)
        for group in GROUPS:
            for network, _, result in runs[group]:
                by_network[network].append(result["test_top1"])
        pooled = pooled_seed_std(by_network)
        if pooled is None:
            return None
        std, freedom = pooled
        seeds = self.budget.seeds
        random_means = list(self.network_means(runs["random"]).values())
        return {"seed_std": std, "degrees_of_freedom": freedom,
                "networks": sum(len([v for v in values if v is not None]) >= 2
                                for values in by_network.values()),
                "seeds": seeds, "resolvable": 1.96 * std * math.sqrt(2 / seeds),
                "random_network_std": (mean_std(random_means)[1] if len(random_means) > 1
                                       else None)}

    def cell_composition(self, runs) -> dict:
        """What the searched and the random networks' cells hold: group -> {networks, normal,
        reduce}, each cell an op -> mean count per network (networks with a finished run). A
        search that drifts towards some ops shows here beside the uniform draws."""
        composition = {}
        for group, genotype_of in (("searched", self._searched), ("searched_pt", self._selected),
                                   ("random", self._random)):
            networks = sorted({network for network, _, _ in runs[group]})
            counts = {"normal": collections.Counter(), "reduce": collections.Counter()}
            for network in networks:
                genotype = genotype_of(int(network.rsplit("-", 1)[1]))()
                for cell, counter in counts.items():
                    counter.update(op for op, _ in genotype[cell])
            composition[group] = {"networks": len(networks), **{
                cell: {op: counter[op] / len(networks) for op in sorted(counter)}
                for cell, counter in counts.items()}} if networks else {"networks": 0}
        return composition

    def planned_runs(self) -> dict:
        seeds = self.budget.seeds
        return {"searched": self.budget.searches * seeds,
                "searched_pt": self.budget.searches * seeds, "random": self.budget.random * seeds,
                "bireal": seeds, "quicknet": seeds, "float": seeds}

    def selection_seconds(self, searches) -> list:
        """What each DARTS-PT network cost to find: its search's seconds plus its selection's
        (tools/derive.py, measured in the derive unit)."""
        seconds = []
        for index, search in enumerate(searches):
            derived = self.exp.cached(f"derive_pt-{index}")
            if search and derived:
                seconds.append(search["result"]["search_seconds"] + derived["result"]["seconds"])
        return seconds

    @staticmethod
    def _row(group, runs, search_seconds) -> dict:
        results = [r for _, _, r in runs]
        networks = sorted({n for n, _, _ in runs})
        return {
            "group": group, "networks": len(networks), "runs": len(runs),
            "test_top1": mean_std([r["test_top1"] for r in results]),
            "test_top1_text": fmt_mean_std([r["test_top1"] for r in results]),
            "val_top1_text": fmt_mean_std([r.get("val_top1") for r in results]),
            "ops": mean_std([r["ops"] for r in results]),
            "params_binary": mean_std([r["params_binary"] for r in results]),
            "params_float": mean_std([r["params_float"] for r in results]),
            "tflite_bytes": mean_std([r.get("tflite_bytes") for r in results]),
            "search_seconds": mean_std(search_seconds.get(group, [])),
            "ops_split": ops_split(results),
        }

    def budget_check(self) -> dict | None:
        rows = []
        for network, _ in self._budget_networks():
            short, long = (self.exp.cached(self._budget_key(network, label, epochs)) for
                           label, epochs in zip(("short", "long"), self.budget.budget_epochs))
            protocol_run = self.exp.cached(f"{network}_seed-0")
            if short and long and None not in (score(short["result"])[0],
                                               score(long["result"])[0]):
                rows.append({"network": network, "short": score(short["result"])[0],
                             "protocol": score(protocol_run["result"])[0] if protocol_run else None,
                             "long": score(long["result"])[0],
                             "seconds": {"short": short["result"]["train_seconds"],
                                         "long": long["result"]["train_seconds"],
                                         "protocol": protocol_run["result"]["train_seconds"]
                                         if protocol_run else None},
                             "ranked_on": score(long["result"])[1]})
        if len(rows) < 2:
            return None
        short_eps, long_eps = self.budget.budget_epochs
        check = {"networks": rows, "epochs": {"short": short_eps, "long": long_eps,
                                               "protocol": self.budget.train_epochs()},
                 "tau_short_long": kendall_tau([r["short"] for r in rows],
                                               [r["long"] for r in rows])}
        full = [r for r in rows if r["protocol"] is not None]
        if len(full) >= 2:
            check["tau_protocol_long"] = kendall_tau([r["protocol"] for r in full],
                                                     [r["long"] for r in full])
        return check

    def markdown(self, table: dict) -> str:
        def stat(value, scale=1.0, digits=0, suffix=""):
            return "-" if value is None else f"{value[0] * scale:,.{digits}f}{suffix}"

        lines = [f"Budget `{table['budget']}` on `{table['dataset']}`; every number below is a "
                 "run of `python experiments/compare.py` (units in `units/`).", "",
                 "| network | networks / runs (of planned) | test top-1 (mean ± std) | "
                 "val top-1 | OPs | params 1-bit / 32-bit | .tflite | search cost |",
                 "|---|---|---|---|---|---|---|---|"]
        for row in table["rows"]:
            lines.append(
                f"| {row['group']} | {row['networks']} / {row['runs']} ({row['planned_runs']})"
                f" | {row['test_top1_text']} | {row['val_top1_text']} | "
                f"{stat(row['ops'], 1e-6, 3, 'M')} | {stat(row['params_binary'])} / "
                f"{stat(row['params_float'])} | {stat(row['tflite_bytes'], 1 / 1024, 1, ' KiB')} |"
                f" {stat(row['search_seconds'], 1, 0, ' s') if row['search_seconds'] else '-'} |")
        for key, title in (("improvement_over_random", "Improvement over random (Yang et al. "
                                                         "2020)"),
                           ("selection_over_random", "Genotypes selected by perturbation "
                                                     "(DARTS-PT), improvement over random")):
            if key in table:
                lines += ["", *self._improvement_markdown(table[key], title,
                                                          "searched_pt" if "selection" in key
                                                          else "searched")]
        paired = table.get("selection_paired")
        if paired:
            lines += ["", "The same supernets, two selection rules (mean test top-1 over the "
                      "seeds, magnitude -> perturbation): " + "; ".join(
                          f"search {p['search']} {percent(p['magnitude'])} -> "
                          f"{percent(p['perturbation'])}" for p in paired) + "."]
        lines += self._noise_markdown(table.get("seed_noise"))
        lines += self._ops_split_markdown(table["rows"])
        unfinished = [f"{row['group']} {row['runs']} of {row['planned_runs']}"
                      for row in table["rows"] if row["runs"] < row["planned_runs"]]
        if unfinished:
            lines += ["", f"**Partial: runs finished {', '.join(unfinished)}.** Stages still to "
                      "run: `python experiments/compare.py --stage plan`; no comparison holds "
                      "before every group is complete."]
        lines += ["", "Every run:", "", "| network | seed | OPs | test top-1 | val top-1 | "
                  "train s |", "|---|---|---|---|---|---|"]
        for group in GROUPS:
            for run in table["runs"][group]:
                val = run.get("val_top1")
                ops, seconds = run["ops"], run["train_seconds"]
                lines.append(f"| {run['network']} | {run['seed']} | "
                             f"{'-' if ops is None else f'{ops / 1e6:.3f}M'} | "
                             f"{run_text(run, suffix='%')} | "
                             f"{'-' if val is None else f'{100 * val:.2f}%'} | "
                             f"{'-' if seconds is None else f'{seconds:.0f}'} |")
        lines += self._composition_markdown(table["cell_composition"])
        check = table["budget_check"]
        if check:
            epochs = check["epochs"]
            lines += ["", f"Budget check ({len(check['networks'])} networks, ranked on "
                      f"{check['networks'][0]['ranked_on']}): Kendall tau "
                      f"{epochs['short']} vs {epochs['long']} epochs = "
                      f"{check['tau_short_long']:.2f}"
                      + (f"; protocol ({epochs['protocol']} epochs) vs {epochs['long']} = "
                         f"{check['tau_protocol_long']:.2f}" if "tau_protocol_long" in check
                         else ""), "",
                      "| network | short | protocol | long | train s (short / protocol / long) |",
                      "|---|---|---|---|---|"]
            for row in check["networks"]:
                cells = ["-" if row[k] is None else f"{100 * row[k]:.2f}%"
                         for k in ("short", "protocol", "long")]
                seconds = " / ".join("-" if row["seconds"][k] is None else
                                     f"{row['seconds'][k]:.0f}"
                                     for k in ("short", "protocol", "long"))
                lines.append(f"| {row['network']} | {' | '.join(cells)} | {seconds} |")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _noise_markdown(noise: dict | None) -> list:
        if not noise:
            return []
        std, seeds = 100 * noise["seed_std"], noise["seeds"]
        line = (f"Seed noise: one retraining's test top-1 lies {std:.2f} points (std) from its "
                f"network's mean (pooled over {noise['networks']} networks, "
                f"{noise['degrees_of_freedom']} degrees of freedom); with {seeds} seeds two "
                f"networks are told apart (95%) when their means differ by more than "
                f"{100 * noise['resolvable']:.2f} points.")
        spread = noise["random_network_std"]
        if spread:
            share = 1 - (std ** 2 / seeds) / (100 * spread) ** 2
            line += (f" The random networks' means spread {100 * spread:.2f} points (std)"
                     + (f", about {100 * share:.0f}% of its variance the architecture's, the "
                        "rest the seeds'." if share > 0 else ", no more than the seeds "
                        "explain."))
        return ["", line]

    @staticmethod
    def _ops_split_markdown(rows: list) -> list:
        rows = [row for row in rows if row.get("ops_split")]
        if not rows:
            return []
        lines = ["", "Where the OPs go (OPs = float MACs + binary MACs / 64; mean over the runs):",
                 "", "| network | float MACs | binary MACs / 64 | float share of the OPs |",
                 "|---|---|---|---|"]
        for row in rows:
            split = row["ops_split"]
            lines.append(f"| {row['group']} | {split['float_macs']:,.0f} | "
                         f"{split['binary_ops']:,.0f} | {100 * split['float_share']:.0f}% |")
        return lines

    @staticmethod
    def _improvement_markdown(improvement: dict, title: str, group: str) -> list:
        means = improvement["network_means"]
        return [f"{title}: {improvement['points']:+.2f} points, relative "
                f"{improvement['relative_percent']:+.2f}% (mean {group} - mean random).",
                "Per network, mean test top-1 over its seeds: " + "; ".join(
                    f"{name} " + ", ".join(f"{100 * v:.2f}" for v in means[kind].values())
                    for name, kind in ((group, "searched"), ("random", "random"))) +
                f". Exact permutation test on these network means ({len(means['searched'])} "
                f"against {len(means['random'])}): two-sided p = "
                f"{improvement['permutation_p']:.3f}."]

    @staticmethod
    def _composition_markdown(composition: dict) -> list:
        groups = [g for g in ("searched", "searched_pt", "random")
                  if composition.get(g, {}).get("networks")]
        if not groups:
            return []
        ops = sorted({op for g in groups for cell in ("normal", "reduce")
                      for op in composition[g][cell]})
        header = " | ".join(f"{g} {cell} ({composition[g]['networks']} networks)"
                            for g in groups for cell in ("normal", "reduce"))
        edges = round(sum(composition[groups[0]]["normal"].values()))
        lines = ["", f"What the cells hold (edges per network, mean over networks; {edges} edges "
                 "per cell):", "", f"| op | {header} |", "|---" * (1 + 2 * len(groups)) + "|"]
        for op in ops:
            cells = " | ".join(f"{composition[g][cell].get(op, 0):.2f}" for g in groups
                               for cell in ("normal", "reduce"))
            lines.append(f"| {op} | {cells} |")
        return lines


def ops_split(results: list) -> dict | None:
    """Mean float MACs, binary MACs / 64 and float share of the OPs over runs that recorded
    them (None when none did): where a network of given OPs spends them."""
    split = [(r["float_macs"], r["binary_macs"] / 64) for r in results
             if r.get("float_macs") is not None and r.get("binary_macs") is not None]
    if not split:
        return None
    floats, binaries = (sum(values) / len(split) for values in zip(*split))
    return {"float_macs": floats, "binary_ops": binaries,
            "float_share": sum(f / (f + b) for f, b in split) / len(split)}


def make(budget_name: str, output_dir, work_dir, dataset=None) -> Compare:
    import dataclasses

    budget = protocol.BUDGETS[budget_name]
    if dataset:
        budget = dataclasses.replace(budget, dataset=dataset)
    return Compare(protocol.Experiment(budget, output_dir, work_dir))


def main(argv):
    del argv
    compare = make(FLAGS.budget, FLAGS.output_dir, FLAGS.work_dir, FLAGS.dataset)
    protocol.run_stage(compare.exp, compare.stages(), FLAGS.stage, compare.report)


if __name__ == "__main__":
    cli.run(main)
