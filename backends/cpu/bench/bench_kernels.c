/* placeholder, filled in later */
int main(void) { return 0; }
