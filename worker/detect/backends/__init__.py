"""Detector backends, one module per runtime, each declaring a `PLUGIN` (a
`common.detectors.DetectorBackend`) registered under the `framecast.detectors` entry points."""
