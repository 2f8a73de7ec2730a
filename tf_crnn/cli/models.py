"""``tf-crnn models list|show NAME``: the pretrained models shipped with tf-crnn (:mod:`tf_crnn.pretrained`).

    tf-crnn models list               name, summary, alphabet size, size on disk, figures
    tf-crnn models show fraktur-19c   its model card

Use one as ``pretrained:NAME``: ``init_from=pretrained:NAME`` in a training's config,
``tf-crnn predict --model pretrained:NAME``, ``tf-crnn evaluate --model pretrained:NAME``.
"""
from __future__ import annotations

import argparse

from .errors import handles


def describe(card: dict) -> str:
    """One model's lines of ``tf-crnn models list`` (from its ``card.json``)."""
    figures = "; ".join(f"CER {100 * e['cer']:.2f} % on {e['lines']} lines of {e['set']}"
                        for e in card.get("evaluations", []))
    return (f"{card['name']}\n  {card['summary']}\n  alphabet {card['alphabet_size']} symbols, input height "
            f"{card['input_height']} px, {card['size_bytes'] / 1e6:.1f} MB\n  {figures or 'no figures'}")


@handles("models")
def _models(args: argparse.Namespace) -> int:
    from .. import pretrained

    if args.action == "show":
        print(pretrained.card_text(args.name))
        return 0
    names = pretrained.names()
    if not names:
        print("no pretrained models are installed")
        return 1
    print("\n\n".join(describe(pretrained.card(name)) for name in names))
    print("\nuse one as pretrained:NAME (init_from, --model); tf-crnn models show NAME prints its card")
    return 0


def register(sub) -> None:
    """Add ``tf-crnn models`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser("models", help="the pretrained models shipped with tf-crnn (pretrained:NAME)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="name, summary, alphabet size, size, figures of each").set_defaults(func=_models)
    show = actions.add_parser("show", help="print a model's card")
    show.add_argument("name", help="the model's name (tf-crnn models list), e.g. fraktur-19c")
    show.set_defaults(func=_models)
