public class CheckTest {
    public static void main(String[] args) {
        if (!Check.luhn("79927398713")) throw new AssertionError("valid number refused");
        if (Check.luhn("79927398710")) throw new AssertionError("invalid number taken");
        System.out.println("luhn ok");
    }
}
