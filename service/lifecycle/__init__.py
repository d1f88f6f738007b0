"""The models the service holds and swaps: the live one, the previous one and a candidate (``held``), the
checks a checkpoint passes before it holds any place (``checks``), the shadow that compares a candidate on
live traffic, the change that every worker makes together (``control``, over the file protocol of
``proposals``), and ``python -m service.lifecycle.admin``, its command-line client."""
