"""The report's disentanglement section on a constructed DataFrame of jobs: medians and ranges
over seeds by model and hyperparameter, Spearman correlations against scipy's."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from aelab.report.disentanglement import disentanglement_section, model_label


def jobs_frame():
    rows = []
    mig = {("VAE", 1.0): [0.1, 0.3, 0.2], ("BetaTCVAE", 1.0): [0.25, 0.35, 0.3]}
    for (model, beta), values in mig.items():
        for seed, value in enumerate(values):
            rows.append(
                {
                    "model": model,
                    "beta": beta,
                    "seed": seed,
                    "status": "completed",
                    "disent/mig": value,
                    "disent/sap": value / 2 + 0.01 * seed,
                }
            )
    rows.append(
        {
            "model": "DIPVAE",
            "lambda_od": 5.0,
            "dip_type": "ii",
            "seed": 0,
            "status": "completed",
            "disent/mig": 0.05,
            "disent/sap": 0.2,
        }
    )
    rows.append(  # a VAE with the capacity schedule is the AnnealedVAE, by its c_max
        {
            "model": "VAE",
            "beta": 1.0,
            "kl_schedule": "capacity",
            "kl_schedule.c_max": 25.0,
            "seed": 0,
            "status": "completed",
            "disent/mig": 0.4,
            "disent/sap": 0.3,
        }
    )
    rows.append(
        {
            "model": "VAE",
            "beta": 1.0,
            "seed": 9,
            "status": "failed",
            "disent/mig": 0.99,
            "disent/sap": 0.99,
        }
    )
    return pd.DataFrame(rows)


def test_the_section_gives_medians_ranges_and_rank_correlations():
    jobs = jobs_frame()
    text = "\n".join(disentanglement_section(jobs))
    assert "| beta-VAE | beta=1 | 3 | 0.2 [0.1, 0.3] |" in text  # the failed job left out
    assert "| beta-TCVAE | beta=1 | 3 | 0.3 [0.25, 0.35] |" in text
    assert "| DIP-VAE-II | lambda_od=5 | 1 | 0.05 | 0.2 |" in text
    assert "| AnnealedVAE | kl_schedule.c_max=25 | 1 | 0.4 | 0.3 |" in text
    done = jobs[jobs["status"] == "completed"]
    rho = spearmanr(done["disent/mig"], done["disent/sap"]).statistic
    assert f"| mig | 1.00 | {rho:.2f} |" in text
    assert disentanglement_section(jobs.drop(columns=["disent/mig", "disent/sap"])) == []


@pytest.mark.parametrize(
    ("model", "dip_type", "label"),
    [("VAE", None, "beta-VAE"), ("DIPVAE", "i", "DIP-VAE-I"), ("Mine", np.nan, "Mine")],
)
def test_model_labels(model, dip_type, label):
    assert model_label(model, dip_type) == label
    assert model_label("VAE", None, "capacity") == "AnnealedVAE"
    assert model_label("VAE", None, "warmup") == "beta-VAE"


def test_the_scores_are_columns_of_the_hparams_table():
    from aelab.board.summaries import headline_metrics

    runs = [{"test/loss": 1.0, "disent/sap": 0.1}, {"val/loss": 2.0, "disent/mig": 0.2}]
    assert headline_metrics(runs) == ["val/loss", "test/loss", "disent/mig", "disent/sap"]
