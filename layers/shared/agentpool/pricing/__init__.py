"""Price catalog and pricing of metering events, in exact `Decimal` USD."""
