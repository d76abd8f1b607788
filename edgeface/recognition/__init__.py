"""Who is this face: the gallery of enrolled people and the open-set matcher."""
