/* A shared object that is not a spate function: it lacks spate_handler. */
int not_a_handler(void)
{
    return 1;
}
