"""The site model: what a stack file says, checked against its grammar, and what follows from
it. The bottom layer: it imports neither `stacks/` nor `components/`, which both read it."""
