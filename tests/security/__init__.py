"""Attack reproductions from the independent security review (issue 9): one module per
class of attack. Each test was written to fail against the code before its fix."""
