"""FranceConnect as an upstream sign-in: we are a FranceConnect v2 relying party."""
