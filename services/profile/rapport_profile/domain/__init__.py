"""Pure profile logic: how an event becomes graph rows, and who a customer is. No I/O."""
