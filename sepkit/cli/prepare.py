"""``sepkit prepare``: make a corpus from single-speaker recordings (its arguments and its run)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sepkit prepare`` (the CLI only wires these)."""
    from sepkit.data.prepare import PrepareSpec

    d = PrepareSpec()
    parser.add_argument(
        "source",
        type=Path,
        help="folder with one sub-folder per speaker (LibriSpeech, VCTK, your own), or a CSV "
        "file with the columns path,speaker[,gender]",
    )
    parser.add_argument("--out", type=Path, required=True, help="corpus folder to write")
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=d.sample_rate,
        help="rate of the corpus; recordings at other rates are resampled (default 8000)",
    )
    parser.add_argument("--num-spks", type=int, default=d.num_spks, help="speakers per mixture")
    parser.add_argument(
        "--valid-speakers", type=int, default=0, help="held-out validation speakers (default 5%%)"
    )
    parser.add_argument(
        "--test-speakers", type=int, default=0, help="held-out test speakers (default 10%%)"
    )
    parser.add_argument("--n-valid", type=int, default=d.n_valid, help="validation mixtures")
    parser.add_argument("--n-test", type=int, default=d.n_test, help="test mixtures")
    parser.add_argument(
        "--mix-seconds",
        type=float,
        default=d.mix_seconds,
        help="length of valid/test mixtures (0 = whole recordings, cut to the shortest)",
    )
    parser.add_argument(
        "--gain-db", type=float, default=d.gain_db, help="relative levels within +-GAIN_DB"
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=d.min_seconds,
        help="shorter recordings are unusable (default 1)",
    )
    parser.add_argument(
        "--seed", type=int, default=d.seed, help="which speakers are held out, and the mixtures"
    )
    parser.add_argument(
        "--skip-bad", action="store_true", help="leave unusable recordings out instead of failing"
    )
    parser.add_argument(
        "--noise",
        default=d.noise,
        metavar="none|shipped|FOLDER",
        help="noisy validation and test mixtures (mix = sources + noise), with noise from the "
        "last 20%% of each recording, which training (data.noise) never hears: shipped = the "
        "real noises inside sepkit, or a folder of noise recordings (default none)",
    )
    parser.add_argument(
        "--noise-snr-db",
        type=float,
        nargs=2,
        default=list(d.noise_snr_db),
        metavar=("LOW", "HIGH"),
        help="SNR of the loudest speaker over the noise, uniform in [LOW, HIGH] dB "
        "(default -6 3, as WHAM!); with --reverb, of the loudest reverberant speaker",
    )
    parser.add_argument(
        "--reverb",
        action="store_true",
        help="reverberant validation and test mixtures (WHAMR!-style): each in a simulated room "
        "of its own, never one of training's (data.reverb); needs pip install 'sepkit[rooms]'",
    )
    parser.add_argument(
        "--rt60",
        type=float,
        nargs=2,
        default=[0.2, 1.0],
        metavar=("LOW", "HIGH"),
        help="with --reverb: reverberation time, uniform in [LOW, HIGH] s (default 0.2 1.0; keep "
        "it equal to the recipe's data.room.rt60)",
    )
    parser.add_argument(
        "--room-target",
        choices=("direct", "early"),
        default="direct",
        help="with --reverb: the targets s1, s2 ...: each talker's direct path (default, as "
        "WHAMR!'s anechoic sources) or the direct path and its first 50 ms of reflections",
    )


def run(args: argparse.Namespace) -> int:
    from sepkit.data.prepare import PrepareSpec, describe, prepare_corpus
    from sepkit.data.rooms import RoomConfig

    room = None
    if args.reverb:
        room = RoomConfig(rt60=(args.rt60[0], args.rt60[1]), target=args.room_target)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    summary = prepare_corpus(
        args.source,
        args.out,
        PrepareSpec(
            sample_rate=args.sample_rate,
            num_spks=args.num_spks,
            valid_speakers=args.valid_speakers,
            test_speakers=args.test_speakers,
            n_valid=args.n_valid,
            n_test=args.n_test,
            mix_seconds=args.mix_seconds,
            gain_db=args.gain_db,
            min_seconds=args.min_seconds,
            seed=args.seed,
            noise=args.noise,
            noise_snr_db=(args.noise_snr_db[0], args.noise_snr_db[1]),
            room=room,
        ),
        skip_bad=args.skip_bad,
        progress=sys.stderr.isatty(),
    )
    print(describe(summary))
    return 0
