"""`edgeloop demo`: the thesis evaluation reproduced on the local stack with the simulator.

Five phases (beige, label shift, covariate shift, concept drift, and the red floor that
the platform handles with no human step), driven only through the services' gRPC
contracts; the result is a table like the thesis's and a report with plots.

Modules: :mod:`config` (full and quick sizes), :mod:`services` (channels, health, errors
that name the failing service and its log), :mod:`records` (observations as the features
service stored them), :mod:`drives` (replayed and live drives), :mod:`metrics` (errors,
delays, targets), :mod:`phases` (the five phases), :mod:`runner` (start the stack, run the
phases) and :mod:`report` (table, Markdown, plots).
"""
