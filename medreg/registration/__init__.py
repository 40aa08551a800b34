"""Composable registration wrappers and the training objective."""

from medreg.registration.objective import ObjectiveResult, RegistrationObjective
from medreg.registration.wrappers import (
    AffineStep,
    Downsample,
    FromVectorField,
    RegistrationModule,
    TwoStep,
    VelocityField,
    multistep_steps,
    stack_two_step,
)

__all__ = [
    "AffineStep", "Downsample", "FromVectorField", "ObjectiveResult", "RegistrationModule",
    "RegistrationObjective", "TwoStep", "VelocityField", "multistep_steps", "stack_two_step",
]
