"""The nevergrad bridge: a device objective and ask/tell loop on blacksat's meter
(:mod:`blacksat.ng.adapter`), blacksat's own estimators registered as nevergrad optimizers
(:mod:`blacksat.ng.optimizers`), and version shims (:mod:`blacksat.ng.compat`)."""
