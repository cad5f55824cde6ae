"""Unit conversion with exact factors (an inch is 0.0254 m by definition), and temperatures."""

from __future__ import annotations

from fractions import Fraction

F = Fraction
# Each unit: (dimension, factor to the dimension's base unit), written as exact fractions.
UNITS: dict[str, tuple[str, Fraction]] = {
    "mm": ("length", F(1, 1000)),
    "cm": ("length", F(1, 100)),
    "m": ("length", F(1)),
    "km": ("length", F(1000)),
    "in": ("length", F("0.0254")),
    "ft": ("length", F("0.3048")),
    "yd": ("length", F("0.9144")),
    "mi": ("length", F("1609.344")),
    "nmi": ("length", F(1852)),
    "mg": ("mass", F(1, 1_000_000)),
    "g": ("mass", F(1, 1000)),
    "kg": ("mass", F(1)),
    "t": ("mass", F(1000)),
    "oz": ("mass", F("0.028349523125")),
    "lb": ("mass", F("0.45359237")),
    "st": ("mass", F("6.35029318")),
    "ml": ("volume", F(1, 1000)),
    "l": ("volume", F(1)),
    "m3": ("volume", F(1000)),
    "tsp": ("volume", F("0.00492892159375")),
    "tbsp": ("volume", F("0.01478676478125")),
    "fl_oz": ("volume", F("0.0295735295625")),
    "cup": ("volume", F("0.2365882365")),
    "pt": ("volume", F("0.473176473")),
    "qt": ("volume", F("0.946352946")),
    "gal": ("volume", F("3.785411784")),
    "ms": ("time", F(1, 1000)),
    "s": ("time", F(1)),
    "min": ("time", F(60)),
    "h": ("time", F(3600)),
    "day": ("time", F(86400)),
    "week": ("time", F(604800)),
    "m/s": ("speed", F(1)),
    "km/h": ("speed", F(1000, 3600)),
    "mph": ("speed", F("1609.344") / 3600),
    "kn": ("speed", F(1852, 3600)),
    "b": ("data", F(1)),
    "kb": ("data", F(1000)),
    "mb": ("data", F(1000**2)),
    "gb": ("data", F(1000**3)),
    "tb": ("data", F(1000**4)),
    "kib": ("data", F(1024)),
    "mib": ("data", F(1024**2)),
    "gib": ("data", F(1024**3)),
    "tib": ("data", F(1024**4)),
    "c": ("temperature", F(1)),
    "f": ("temperature", F(1)),
    "k": ("temperature", F(1)),
}
ALIASES = {
    "millimeter": "mm", "centimeter": "cm", "meter": "m", "metre": "m", "kilometer": "km",
    "kilometre": "km", "inch": "in", "inches": "in", "foot": "ft", "feet": "ft", "yard": "yd",
    "mile": "mi", "nautical mile": "nmi", "milligram": "mg", "gram": "g", "kilogram": "kg",
    "tonne": "t", "ton": "t", "ounce": "oz", "pound": "lb", "lbs": "lb", "stone": "st",
    "milliliter": "ml", "millilitre": "ml", "liter": "l", "litre": "l", "cubic meter": "m3",
    "m³": "m3", "teaspoon": "tsp", "tablespoon": "tbsp", "fluid ounce": "fl_oz", "fl oz": "fl_oz",
    "pint": "pt", "quart": "qt", "gallon": "gal", "millisecond": "ms", "second": "s", "sec": "s",
    "minute": "min", "hour": "h", "hr": "h", "days": "day", "d": "day", "weeks": "week",
    "kph": "km/h", "kmh": "km/h", "miles per hour": "mph", "knot": "kn", "knots": "kn",
    "byte": "b", "kilobyte": "kb", "megabyte": "mb", "gigabyte": "gb", "terabyte": "tb",
    "celsius": "c", "°c": "c", "fahrenheit": "f", "°f": "f", "kelvin": "k",
}  # fmt: skip


def unit(name: str) -> str:
    """The canonical unit for a name ("Miles", "°C", "km/h"); ValueError if unknown."""
    key = " ".join(name.strip().lower().split())
    key = ALIASES.get(key) or ALIASES.get(key.removesuffix("s")) or key
    if key not in UNITS:
        raise ValueError(f"unknown unit {name!r}; known: {', '.join(UNITS)}")
    return key


def convert(value: Fraction, source: str, target: str) -> Fraction:
    """`value` in `source` units, expressed in `target` units, exactly."""
    a, b = unit(source), unit(target)
    (dimension, factor), (other, to_factor) = UNITS[a], UNITS[b]
    if dimension != other:
        raise ValueError(f"cannot convert {dimension} ({source}) to {other} ({target})")
    if dimension == "temperature":
        kelvin = _to_kelvin(value, a)
        if kelvin < 0:
            raise ValueError(f"{value} {source} is below absolute zero")
        return _from_kelvin(kelvin, b)
    return value * factor / to_factor


def _to_kelvin(value: Fraction, scale: str) -> Fraction:
    if scale == "c":
        return value + F("273.15")
    if scale == "f":
        return (value - 32) * F(5, 9) + F("273.15")
    return value


def _from_kelvin(value: Fraction, scale: str) -> Fraction:
    if scale == "c":
        return value - F("273.15")
    if scale == "f":
        return (value - F("273.15")) * F(9, 5) + 32
    return value
