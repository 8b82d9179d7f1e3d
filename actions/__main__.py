"""Run the action server: ``python -m actions --port 5055``.

rasa-sdk's own server, with every log line masked (户号, phone numbers) before it is written.
"""
from __future__ import annotations

from rasa_sdk.__main__ import main_from_args
from rasa_sdk.endpoint import create_argument_parser

from integrations.log_masking import install_log_masking


def main() -> None:
    install_log_masking()
    parser = create_argument_parser()
    parser.set_defaults(actions="actions")
    main_from_args(parser.parse_args())


if __name__ == "__main__":
    main()
